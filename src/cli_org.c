/*
 * cli_org.c — keel org (being built).
 */
#include <stdio.h>

#include "cli.h"

int cmd_org(int argc, char **argv, char **envp) {
  (void)argc;
  (void)argv;
  (void)envp;
  fprintf(stderr, "keel org: not available in this build\n");
  return 1;
}
