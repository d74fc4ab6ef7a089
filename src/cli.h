/*
 * cli.h — the `keel` command line: a table of commands, each with its own
 * flags and --help. Exit codes: 0 success, 1 failure while running, 2 usage
 * error (unknown command or flag, bad value).
 */
#ifndef KEEL_CLI_H
#define KEEL_CLI_H

int cli_main(int argc, char **argv, char **envp);

#endif
