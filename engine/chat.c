/* Built-in chat templates.
 *
 * GGUF files carry their chat format as a Jinja template; rather than
 * embedding a Jinja interpreter, pinfer recognises the templates of the
 * model families it runs by their distinctive markers (the approach of
 * llama.cpp's llm_chat_detect_template) and renders each format with the
 * table below. The formats follow the models' official templates as
 * Hugging Face transformers renders them, minus the leading BOS (see
 * pinfer.h for the tokenization convention).
 *
 * Every format is a sequence of turns wrapped in fixed strings, so one
 * table row describes it: a prefix and suffix per role, what asks the model
 * to answer, and where a system message goes in formats without a system
 * turn (folded into a user message, as their official templates do). */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "chat.h"

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, N_ROLES };

enum fold {
	FOLD_NONE,       /* the system message has a turn of its own */
	FOLD_NEXT_USER,  /* prepended to the user message that follows it */
	FOLD_LAST_USER,  /* prepended to the conversation's last user message */
};

struct chat_tmpl {
	const char *name;
	const char *pre[N_ROLES], *post[N_ROLES];
	const char *gen;       /* add_generation_prompt */
	const char *turn_bos;  /* before user turns that do not open the text */
	enum fold fold;
	const char *fold_pre, *fold_post;  /* around a folded system message */
	bool trim[N_ROLES];    /* strip the content's surrounding whitespace */
};

static const struct chat_tmpl templates[] = {
	/* Meta's Llama-2-chat: every [INST] opens with BOS, the first one
	 * added by the tokenizer. */
	{ .name = "llama2",
	  .pre = { [ROLE_USER] = "[INST] ", [ROLE_ASSISTANT] = " " },
	  .post = { [ROLE_USER] = " [/INST]", [ROLE_ASSISTANT] = " </s>" },
	  .gen = "", .turn_bos = "<s>",
	  .fold = FOLD_NEXT_USER, .fold_pre = "<<SYS>>\n", .fold_post = "\n<</SYS>>\n\n",
	  .trim = { [ROLE_USER] = true, [ROLE_ASSISTANT] = true } },
	/* Mistral-7B-Instruct v0.1 and v0.2 as first published. */
	{ .name = "mistral",
	  .pre = { [ROLE_USER] = "[INST] ", [ROLE_ASSISTANT] = "" },
	  .post = { [ROLE_USER] = " [/INST]", [ROLE_ASSISTANT] = "</s>" },
	  .gen = "", .turn_bos = "",
	  .fold = FOLD_NEXT_USER, .fold_pre = "", .fold_post = "\n\n" },
	/* Mistral's later "v1" template for the same models. */
	{ .name = "mistral-v1",
	  .pre = { [ROLE_USER] = " [INST] ", [ROLE_ASSISTANT] = " " },
	  .post = { [ROLE_USER] = " [/INST]", [ROLE_ASSISTANT] = "</s>" },
	  .gen = "", .turn_bos = "",
	  .fold = FOLD_NEXT_USER, .fold_pre = "", .fold_post = "\n\n" },
	/* Mistral v0.3 and later ("v3" tokenizer). */
	{ .name = "mistral-v3",
	  .pre = { [ROLE_USER] = "[INST] ", [ROLE_ASSISTANT] = " " },
	  .post = { [ROLE_USER] = "[/INST]", [ROLE_ASSISTANT] = "</s>" },
	  .gen = "", .turn_bos = "",
	  .fold = FOLD_LAST_USER, .fold_pre = "", .fold_post = "\n\n",
	  .trim = { [ROLE_ASSISTANT] = true } },
	/* Mistral Nemo ("v3-tekken" tokenizer). */
	{ .name = "mistral-v3-tekken",
	  .pre = { [ROLE_USER] = "[INST]", [ROLE_ASSISTANT] = "" },
	  .post = { [ROLE_USER] = "[/INST]", [ROLE_ASSISTANT] = "</s>" },
	  .gen = "", .turn_bos = "",
	  .fold = FOLD_LAST_USER, .fold_pre = "", .fold_post = "\n\n" },
	/* Meta-Llama-3(.x)-Instruct. */
	{ .name = "llama3",
	  .pre = { "<|start_header_id|>system<|end_header_id|>\n\n",
		   "<|start_header_id|>user<|end_header_id|>\n\n",
		   "<|start_header_id|>assistant<|end_header_id|>\n\n" },
	  .post = { "<|eot_id|>", "<|eot_id|>", "<|eot_id|>" },
	  .gen = "<|start_header_id|>assistant<|end_header_id|>\n\n", .turn_bos = "",
	  .trim = { true, true, true } },
	/* ChatML: Qwen2, OpenHermes, and many fine-tunes. */
	{ .name = "chatml",
	  .pre = { "<|im_start|>system\n", "<|im_start|>user\n", "<|im_start|>assistant\n" },
	  .post = { "<|im_end|>\n", "<|im_end|>\n", "<|im_end|>\n" },
	  .gen = "<|im_start|>assistant\n", .turn_bos = "" },
	/* HuggingFaceH4 Zephyr (Mistral-based: EOS is "</s>"). */
	{ .name = "zephyr",
	  .pre = { "<|system|>\n", "<|user|>\n", "<|assistant|>\n" },
	  .post = { "</s>\n", "</s>\n", "</s>\n" },
	  .gen = "<|assistant|>\n", .turn_bos = "" },
	/* Microsoft Phi-3. */
	{ .name = "phi3",
	  .pre = { "<|system|>\n", "<|user|>\n", "<|assistant|>\n" },
	  .post = { "<|end|>\n", "<|end|>\n", "<|end|>\n" },
	  .gen = "<|assistant|>\n", .turn_bos = "" },
	/* Google Gemma: no system turn; later versions fold it like this. */
	{ .name = "gemma",
	  .pre = { [ROLE_USER] = "<start_of_turn>user\n", [ROLE_ASSISTANT] = "<start_of_turn>model\n" },
	  .post = { [ROLE_USER] = "<end_of_turn>\n", [ROLE_ASSISTANT] = "<end_of_turn>\n" },
	  .gen = "<start_of_turn>model\n", .turn_bos = "",
	  .fold = FOLD_NEXT_USER, .fold_pre = "", .fold_post = "\n\n",
	  .trim = { [ROLE_USER] = true, [ROLE_ASSISTANT] = true } },
};

#define N_TEMPLATES (sizeof(templates) / sizeof(templates[0]))

static bool has(const char *t, size_t len, const char *s)
{
	return memmem(t, len, s, strlen(s)) != NULL;
}

/* The checks run from the most to the least specific marker: Mistral's
 * templates all contain "[INST]", and Phi-3's share "<|user|>" with
 * Zephyr's. */
const char *pf_chat_detect(const char *t, size_t len)
{
	if (has(t, len, "<|im_start|>"))
		return "chatml";
	if (has(t, len, "<|start_header_id|>") && has(t, len, "<|end_header_id|>"))
		return "llama3";
	/* Mistral's v7 format (system prompt markers) is not built in. */
	if (has(t, len, "[SYSTEM_PROMPT]"))
		return NULL;
	if (has(t, len, "[INST]")) {
		if (has(t, len, "<<SYS>>"))
			return "llama2";
		/* Mistral's own templates name system_message in the v1 layout
		 * and list tools in v3; the original ones do neither. */
		if (has(t, len, "' [INST] ' + system_message") || has(t, len, "[AVAILABLE_TOOLS]")) {
			if (has(t, len, " [INST]"))
				return "mistral-v1";
			if (has(t, len, "\"[INST]\""))
				return "mistral-v3-tekken";
			return "mistral-v3";
		}
		return "mistral";
	}
	if (has(t, len, "<start_of_turn>"))
		return "gemma";
	if (has(t, len, "<|user|>") && has(t, len, "<|end|>"))
		return "phi3";
	/* GLM's templates use the same role markers but end no turn with EOS. */
	if (has(t, len, "<|user|>") && has(t, len, "<|assistant|>") && has(t, len, "eos_token"))
		return "zephyr";
	return NULL;
}

const char *pinfer_chat_template_detect(const struct pinfer_model *m)
{
	size_t len;
	const char *t = pinfer_model_chat_template(m, &len);
	return t ? pf_chat_detect(t, len) : NULL;
}

static const struct chat_tmpl *find(const char *name)
{
	for (size_t i = 0; i < N_TEMPLATES; i++)
		if (strcmp(templates[i].name, name) == 0)
			return &templates[i];
	return NULL;
}

const char *pinfer_chat_template_find(const char *name)
{
	const struct chat_tmpl *t = name ? find(name) : NULL;
	return t ? t->name : NULL;
}

const char *pinfer_chat_template_names(void)
{
	return "llama2 mistral mistral-v1 mistral-v3 mistral-v3-tekken llama3 chatml zephyr phi3 gemma";
}

/* Output that keeps counting past cap, so one pass yields the length a
 * retry needs. */
struct out {
	char *buf;
	size_t cap, len;
};

static void put_n(struct out *o, const char *s, size_t n)
{
	if (o->len < o->cap)
		memcpy(o->buf + o->len, s, n < o->cap - o->len ? n : o->cap - o->len);
	o->len += n;
}

static void put(struct out *o, const char *s)
{
	put_n(o, s, strlen(s));
}

static bool is_space(char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static void put_content(struct out *o, const char *s, bool trim)
{
	size_t n = strlen(s);
	if (trim) {
		while (n > 0 && is_space(s[n - 1]))
			n--;
		while (n > 0 && is_space(*s)) {
			s++;
			n--;
		}
	}
	put_n(o, s, n);
}

static int parse_role(const char *r)
{
	static const char *const names[N_ROLES] = { "system", "user", "assistant" };
	for (int i = 0; i < N_ROLES; i++)
		if (strcmp(r, names[i]) == 0)
			return i;
	return -1;
}

/* Checks every message and, for formats that fold the system message into
 * a user message, finds the user message that carries it (*carrier, or
 * SIZE_MAX when there is no system message). A second system message, or
 * one with no user message to carry it, has no place in such a format. */
static int check(const struct chat_tmpl *t, const struct pinfer_chat_msg *msgs, size_t n,
		 size_t *carrier)
{
	bool sys = false;
	*carrier = SIZE_MAX;
	for (size_t i = 0; i < n; i++) {
		if (!msgs[i].role || !msgs[i].content)
			return -EINVAL;
		int r = parse_role(msgs[i].role);
		if (r < 0)
			return -EINVAL;
		if (t->fold == FOLD_NONE)
			continue;
		if (r == ROLE_SYSTEM) {
			if (sys)
				return -EINVAL;
			sys = true;
		} else if (r == ROLE_USER && sys &&
			   (t->fold == FOLD_LAST_USER || *carrier == SIZE_MAX)) {
			*carrier = i;
		}
	}
	return sys && *carrier == SIZE_MAX ? -EINVAL : 0;
}

int pinfer_chat_render(const char *name, const struct pinfer_chat_msg *msgs, size_t n,
		       bool add_generation_prompt, char *buf, size_t cap)
{
	const struct chat_tmpl *t = name ? find(name) : NULL;
	if (!t)
		return -ENOENT;
	if (n > 0 && !msgs)
		return -EINVAL;
	size_t carrier;
	int rc = check(t, msgs, n, &carrier);
	if (rc)
		return rc;

	struct out o = { .buf = buf, .cap = buf ? cap : 0 };
	const char *sys = NULL;
	for (size_t i = 0; i < n; i++) {
		int r = parse_role(msgs[i].role);
		if (r == ROLE_SYSTEM && t->fold != FOLD_NONE) {
			sys = msgs[i].content;
			continue;
		}
		if (r == ROLE_USER && o.len > 0)
			put(&o, t->turn_bos);
		put(&o, t->pre[r]);
		if (i == carrier) {
			put(&o, t->fold_pre);
			put(&o, sys);
			put(&o, t->fold_post);
		}
		put_content(&o, msgs[i].content, t->trim[r]);
		put(&o, t->post[r]);
	}
	if (add_generation_prompt)
		put(&o, t->gen);
	return o.len > INT_MAX ? -EOVERFLOW : (int)o.len;
}
