/* Subcommands of pinfer-model. Each takes argc/argv with argv[0] set to the
 * subcommand's name and returns the process exit status. */
#ifndef PINFER_TOOLS_COMMANDS_H
#define PINFER_TOOLS_COMMANDS_H

int cmd_info(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_synth(int argc, char **argv);

#endif
