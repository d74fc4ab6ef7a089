/*
 * cli_key.c — keel key (being built).
 */
#include <stdio.h>

#include "cli.h"

int cmd_key(int argc, char **argv, char **envp) {
  (void)argc;
  (void)argv;
  (void)envp;
  fprintf(stderr, "keel key: not available in this build\n");
  return 1;
}
