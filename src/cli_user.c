/*
 * cli_user.c — keel user (being built).
 */
#include <stdio.h>

#include "cli.h"

int cmd_user(int argc, char **argv, char **envp) {
  (void)argc;
  (void)argv;
  (void)envp;
  fprintf(stderr, "keel user: not available in this build\n");
  return 1;
}
