/*
 * main.c — the keel binary: everything is a CLI command (see cli.c).
 */
#include "cli.h"

int main(int argc, char **argv, char **envp) {
  return cli_main(argc, argv, envp);
}
