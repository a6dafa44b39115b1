/* pinferd's config file parser, through config_load as pinferd calls it:
 * the input is the file named by --config. Every setting's value parser
 * (sizes, durations, modes, budgets, paths) is reached from its lines. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "frame.h"
#include "fuzz_util.h"
#include "models.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	int fd = fuzz_memfile(data, size, path, sizeof(path));
	if (fd < 0)
		abort();
	char arg0[] = "pinferd", arg1[] = "--config";
	char *argv[] = { arg0, arg1, path, NULL };
	struct config c;
	struct pf_err err = { { 0 } };
	int r = config_load(&c, 3, argv, &err);
	fuzz_check_err(r, &err, "config_load");
	/* What the daemon later trusts: paths are UTF-8 (they go out over the
	 * protocol and D-Bus), the bundle budget parses again. */
	struct models_budget b;
	if (!r && (!proto_utf8_valid(c.socket_path, strlen(c.socket_path)) ||
		   !proto_utf8_valid(c.models_dir, strlen(c.models_dir)) ||
		   (c.offload_budget[0] && !models_parse_budget(c.offload_budget, &b))))
		abort();
	close(fd);
	return 0;
}
