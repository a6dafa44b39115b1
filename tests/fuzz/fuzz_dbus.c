/* LoadModel's D-Bus argument checks (bus_load_args in daemon/bus_methods.c,
 * which bus_method_load_model runs before anything else) on messages built
 * from the input: libdbus validates a message before the daemon sees it,
 * so the input describes one instead of being one. Lines: the model name,
 * then options as TYPE KEY '=' VALUE, TYPE a D-Bus basic type letter (x t
 * i u b d s y n q h); a first line starting with '!' sends the name alone
 * (signature "s"). Strings that are not UTF-8 have their high bytes made
 * '?', as libdbus aborts on them. */
#include <dbus/dbus.h>
#include <stdlib.h>
#include <string.h>

#include "bus_internal.h"
#include "frame.h"
#include "fuzz_util.h"

static void utf8(char *s)
{
	if (proto_utf8_valid(s, strlen(s)))
		return;
	for (; *s; s++)
		if ((unsigned char)*s >= 0x80)
			*s = '?';
}

static bool append_option(DBusMessageIter *dict, char *line)
{
	char *eq = strchr(line, '=');
	if (!*line || !eq)
		return true;
	*eq = 0;
	char type = line[0], *key = line + 1, *value = eq + 1;
	utf8(key);
	utf8(value);
	union {
		dbus_int64_t x;
		dbus_uint64_t t;
		dbus_int32_t i;
		dbus_uint32_t u;
		dbus_bool_t b;
		double d;
		unsigned char y;
		dbus_int16_t n;
		dbus_uint16_t q;
		const char *s;
	} v;
	int dtype;
	const char *sig;
	switch (type) {
	case 'x': dtype = DBUS_TYPE_INT64, sig = "x", v.x = strtoll(value, NULL, 0); break;
	case 't': dtype = DBUS_TYPE_UINT64, sig = "t", v.t = strtoull(value, NULL, 0); break;
	case 'i': dtype = DBUS_TYPE_INT32, sig = "i", v.i = (dbus_int32_t)strtol(value, NULL, 0); break;
	case 'u': dtype = DBUS_TYPE_UINT32, sig = "u", v.u = (dbus_uint32_t)strtoul(value, NULL, 0); break;
	case 'b': dtype = DBUS_TYPE_BOOLEAN, sig = "b", v.b = value[0] == '1'; break;
	case 'd': dtype = DBUS_TYPE_DOUBLE, sig = "d", v.d = strtod(value, NULL); break;
	case 'y': dtype = DBUS_TYPE_BYTE, sig = "y", v.y = (unsigned char)value[0]; break;
	case 'n': dtype = DBUS_TYPE_INT16, sig = "n", v.n = (dbus_int16_t)strtol(value, NULL, 0); break;
	case 'q': dtype = DBUS_TYPE_UINT16, sig = "q", v.q = (dbus_uint16_t)strtoul(value, NULL, 0); break;
	default: dtype = DBUS_TYPE_STRING, sig = "s", v.s = value; break;
	}
	const char *k = key;
	DBusMessageIter entry, var;
	return dbus_message_iter_open_container(dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry) &&
	       dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &k) &&
	       dbus_message_iter_open_container(&entry, DBUS_TYPE_VARIANT, sig, &var) &&
	       dbus_message_iter_append_basic(&var, dtype, &v) && dbus_message_iter_close_container(&entry, &var) &&
	       dbus_message_iter_close_container(dict, &entry);
}

static DBusMessage *build(char *text)
{
	DBusMessage *msg = dbus_message_new_method_call("org.pinfer.Pinfer1", "/org/pinfer/Pinfer1",
							"org.pinfer.Pinfer1.Manager", "LoadModel");
	if (!msg)
		abort();
	char *save, *name = strtok_r(text, "\n", &save), none[] = "";
	bool alone = name && name[0] == '!';
	char *first = name ? name + alone : none;
	utf8(first);
	const char *n = first;
	DBusMessageIter it, dict;
	dbus_message_iter_init_append(msg, &it);
	bool ok = dbus_message_iter_append_basic(&it, DBUS_TYPE_STRING, &n);
	if (ok && !alone) {
		ok = dbus_message_iter_open_container(&it, DBUS_TYPE_ARRAY, "{sv}", &dict);
		for (char *line; ok && (line = strtok_r(NULL, "\n", &save));)
			ok = append_option(&dict, line);
		ok = ok && dbus_message_iter_close_container(&it, &dict);
	}
	if (!ok)
		abort();  /* libdbus out of memory */
	return msg;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = 0;
	DBusMessage *msg = build(text);
	struct bus_call c;
	memset(&c, 0, sizeof(c));
	const char *error = NULL;
	char why[512] = "";
	if (bus_load_args(msg, &c, &error, why, sizeof(why))) {
		if (!c.name[0] || strchr(c.name, '/'))
			abort();  /* a name that is not one was let through */
	} else if (!error || !why[0]) {
		abort();  /* a refusal that does not say what */
	}
	dbus_message_unref(msg);
	free(text);
	return 0;
}
