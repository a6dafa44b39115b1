/* The properties of the manager and model objects: their values, and
 * appending them to messages (Get, GetAll, PropertiesChanged,
 * InterfacesAdded). */
#include "bus_internal.h"

#include <stdio.h>
#include <string.h>

#include "server.h"

static void v_str(struct bus_value *v, const char *s) { v->type = DBUS_TYPE_STRING; v->s = s; }
static void v_u64(struct bus_value *v, uint64_t t) { v->type = DBUS_TYPE_UINT64; v->t = t; }
static void v_i64(struct bus_value *v, int64_t x) { v->type = DBUS_TYPE_INT64; v->x = x; }
static void v_u32(struct bus_value *v, uint32_t u) { v->type = DBUS_TYPE_UINT32; v->u = u; }
static void v_dbl(struct bus_value *v, double d) { v->type = DBUS_TYPE_DOUBLE; v->d = d; }

static void m_version(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b, (void)e;
	v_str(v, PINFERD_VERSION);
}

static void m_state(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)e;
	v_str(v, b->srv->stopping ? "stopping" : "running");
}

static void m_models_dir(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)e;
	v_str(v, b->srv->cfg->models_dir);
}

/* Appended specially: an array (see append_value). */
static void m_loaded(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b, (void)e;
	v->type = DBUS_TYPE_ARRAY;
}

static void m_used(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)e;
	v_u64(v, models_used_bytes(b->srv->models));
}

static void m_budget(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)e;
	v_u64(v, models_budget_bytes(b->srv->models));
}

static void m_connections(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)e;
	v_u32(v, (uint32_t)b->srv->n_conns);
}

static void m_generations(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)e;
	uint32_t n = 0;
	for (struct model_entry *m = models_first(b->srv->models); m; m = m->next)
		if (m->state == MODEL_LOADED) {
			struct sched_stats st;
			sched_stats(m->sched, &st);
			n += (uint32_t)(st.busy + st.queued);
		}
	v_u32(v, n);
}

const struct bus_prop bus_manager_props[] = {
	{ "Version", m_version },
	{ "State", m_state },
	{ "ModelsDirectory", m_models_dir },
	{ "LoadedModels", m_loaded },
	{ "MemoryUsed", m_used },
	{ "MemoryBudget", m_budget },
	{ "Connections", m_connections },
	{ "ActiveGenerations", m_generations },
	{ NULL, NULL },
};

static void p_name(struct bus *b, struct model_entry *e, struct bus_value *v) { (void)b; v_str(v, e->name); }
static void p_path(struct bus *b, struct model_entry *e, struct bus_value *v) { (void)b; v_str(v, e->path); }
static void p_size(struct bus *b, struct model_entry *e, struct bus_value *v) { (void)b; v_u64(v, e->file_bytes); }

static void p_arch(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_str(v, pinfer_model_info(e->model)->arch);
}

static void p_quant(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_str(v, pinfer_model_info(e->model)->quant);
}

static void p_params(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_u64(v, pinfer_model_info(e->model)->n_params);
}

static void p_template(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	const char *t = pinfer_chat_template_detect(e->model);
	v_str(v, t ? t : "");
}

static void p_ctx(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct sched_stats st;
	sched_stats(e->sched, &st);
	v_u32(v, (uint32_t)st.n_ctx);
}

static void p_slots(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct sched_stats st;
	sched_stats(e->sched, &st);
	v_u32(v, (uint32_t)st.slots);
}

static void p_memory(struct bus *b, struct model_entry *e, struct bus_value *v) { (void)b; v_u64(v, e->mem_bytes); }

static void p_sparsity(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_str(v, pinfer_sparsity_name(pinfer_model_info(e->model)->sparsity));
}

/* The share of FFN neurons skipped by the generations that ended. */
static void p_measured_sparsity(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_dbl(v, models_measured_sparsity(e));
}

static void p_loaded_at(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_u64(v, (uint64_t)e->loaded_at_unix_us);
}

static void p_keep_alive(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_i64(v, e->keep_alive_ms < 0 ? -1 : e->keep_alive_ms);
}

static void p_expires(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	int64_t ms = e->expires_at_unix_ms;
	v_i64(v, ms > 0 ? ms * 1000 : ms);
}

static void p_active(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct sched_stats st;
	sched_stats(e->sched, &st);
	v_u32(v, (uint32_t)st.busy);
}

static void p_queued(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct sched_stats st;
	sched_stats(e->sched, &st);
	v_u32(v, (uint32_t)st.queued);
}

static void p_tokens(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_u64(v, e->tokens_generated);
}

static void p_speed(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	v_dbl(v, models_decode_tps(e));
}

/* Offloaded models (docs/offload.md); 0 for the others. */
static void p_budget(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct models_offload o;
	models_offload(e, &o);
	v_u64(v, o.budget);
}

static void p_cache_bytes(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct models_offload o;
	models_offload(e, &o);
	v_u64(v, o.cache_bytes);
}

static void p_hit_rate(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct models_offload o;
	models_offload(e, &o);
	v_dbl(v, o.hit_rate);
}

static void p_read_per_token(struct bus *b, struct model_entry *e, struct bus_value *v)
{
	(void)b;
	struct models_offload o;
	models_offload(e, &o);
	v_dbl(v, o.bytes_read_per_token);
}

const struct bus_prop bus_model_props[] = {
	{ "Name", p_name },
	{ "Path", p_path },
	{ "Size", p_size },
	{ "Architecture", p_arch },
	{ "Quantization", p_quant },
	{ "Parameters", p_params },
	{ "ChatTemplate", p_template },
	{ "ContextLength", p_ctx },
	{ "Slots", p_slots },
	{ "MemoryBytes", p_memory },
	{ "SparsityMode", p_sparsity },
	{ "MeasuredSparsity", p_measured_sparsity },
	{ "LoadedAt", p_loaded_at },
	{ "KeepAlive", p_keep_alive },
	{ "ExpiresAt", p_expires },
	{ "ActiveSessions", p_active },
	{ "QueuedRequests", p_queued },
	{ "TokensGenerated", p_tokens },
	{ "DecodeTokensPerSecond", p_speed },
	{ "NeuronCacheBytes", p_cache_bytes },
	{ "NeuronCacheHitRate", p_hit_rate },
	{ "MemoryBudget", p_budget },
	{ "BytesReadPerToken", p_read_per_token },
	{ NULL, NULL },
};

void bus_object_path(char *buf, size_t size, uint64_t seq)
{
	snprintf(buf, size, BUS_MODEL_PREFIX "%llu", (unsigned long long)seq);
}

/* Appends the manager's LoadedModels array (inside the variant). */
static bool append_loaded(struct bus *b, DBusMessageIter *it)
{
	DBusMessageIter arr;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "o", &arr))
		return false;
	bool ok = true;
	for (int i = 0; ok && i < b->n_objects; i++) {
		char path[96];
		bus_object_path(path, sizeof(path), b->objects[i].seq);
		const char *p = path;
		ok = dbus_message_iter_append_basic(&arr, DBUS_TYPE_OBJECT_PATH, &p);
	}
	if (!ok) {
		dbus_message_iter_abandon_container(it, &arr);
		return false;
	}
	return dbus_message_iter_close_container(it, &arr);
}

/* Appends the property's value as a variant. */
bool bus_append_value(struct bus *b, struct model_entry *e, const struct bus_prop *p, DBusMessageIter *it)
{
	struct bus_value v = { 0 };
	p->get(b, e, &v);
	char sig[3] = { (char)v.type, 0, 0 };
	if (v.type == DBUS_TYPE_ARRAY)
		sig[1] = DBUS_TYPE_OBJECT_PATH;
	DBusMessageIter var;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_VARIANT, sig, &var))
		return false;
	bool ok = v.type == DBUS_TYPE_ARRAY ? append_loaded(b, &var)
		  : dbus_message_iter_append_basic(&var, v.type, &v.s);
	if (!ok) {
		dbus_message_iter_abandon_container(it, &var);
		return false;
	}
	return dbus_message_iter_close_container(it, &var);
}

/* Appends one {sv} entry per property in props, or only those named in
 * only (NULL-terminated) when given. */
bool bus_append_props(struct bus *b, struct model_entry *e, const struct bus_prop *props,
			 const char *const *only, DBusMessageIter *it)
{
	DBusMessageIter dict;
	if (!dbus_message_iter_open_container(it, DBUS_TYPE_ARRAY, "{sv}", &dict))
		return false;
	bool ok = true;
	for (const struct bus_prop *p = props; ok && p->name; p++) {
		if (only) {
			bool wanted = false;
			for (const char *const *o = only; *o; o++)
				wanted |= !strcmp(*o, p->name);
			if (!wanted)
				continue;
		}
		DBusMessageIter entry;
		ok = dbus_message_iter_open_container(&dict, DBUS_TYPE_DICT_ENTRY, NULL, &entry);
		if (!ok)
			break;
		ok = dbus_message_iter_append_basic(&entry, DBUS_TYPE_STRING, &p->name) &&
		     bus_append_value(b, e, p, &entry);
		if (!ok) {
			dbus_message_iter_abandon_container(&dict, &entry);
			break;
		}
		ok = dbus_message_iter_close_container(&dict, &entry);
	}
	if (!ok) {
		dbus_message_iter_abandon_container(it, &dict);
		return false;
	}
	return dbus_message_iter_close_container(it, &dict);
}

