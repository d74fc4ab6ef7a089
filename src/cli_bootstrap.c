/*
 * cli_bootstrap.c — keel bootstrap (being built).
 */
#include <stdio.h>

#include "cli.h"

int cmd_bootstrap(int argc, char **argv, char **envp) {
  (void)argc;
  (void)argv;
  (void)envp;
  fprintf(stderr, "keel bootstrap: not available in this build\n");
  return 1;
}
