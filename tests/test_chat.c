/* Chat templates: exact renderings of every built-in format, recognition
 * of the models' own Jinja templates, and the tokenization convention.
 *
 * Expected renderings are what Hugging Face transformers'
 * apply_chat_template produces with each family's official template
 * (tokenizer_config.json of meta-llama/Llama-2-7b-chat-hf,
 * mistralai/Mistral-7B-Instruct-v0.2 (original and "v1" revisions),
 * Mistral-7B-Instruct-v0.3 ("v3"), Mistral-Nemo-Instruct-2407 ("v3-tekken"),
 * meta-llama/Meta-Llama-3-8B-Instruct, Qwen/Qwen2-7B-Instruct,
 * HuggingFaceH4/zephyr-7b-beta, microsoft/Phi-3-mini-4k-instruct,
 * google/gemma-7b-it), cross-checked against the rendered outputs listed
 * in llama.cpp's tests/test-chat-template.cpp, with the leading BOS removed
 * (pinfer.h: the tokenizer adds it). Where an official template rejects a
 * system message (Mistral v0.2, Gemma 1), the fold its later revisions
 * use is expected. */
#include "testutil.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat.h"
#include "gguf.h"
#include "gguf_writer.h"
#include "pinfer.h"

static const struct pinfer_chat_msg conv[] = {
	{ "system", "You are a helpful assistant" },
	{ "user", "Hello" },
	{ "assistant", "Hi there" },
	{ "user", "Who are you" },
};
#define N_CONV (sizeof(conv) / sizeof(conv[0]))

/* Renders into a buffer of exactly the reported size, checking that the
 * size query and the rendering agree. */
static char *render(const char *name, const struct pinfer_chat_msg *msgs, size_t n, bool gen)
{
	int len = pinfer_chat_render(name, msgs, n, gen, NULL, 0);
	assert_true(len >= 0);
	char *buf = malloc((size_t)len + 1);
	assert_non_null(buf);
	assert_int_equal(pinfer_chat_render(name, msgs, n, gen, buf, (size_t)len), len);
	buf[len] = 0;
	return buf;
}

static void expect_render(const char *name, const struct pinfer_chat_msg *msgs, size_t n,
			  bool gen, const char *want)
{
	char *got = render(name, msgs, n, gen);
	if (strcmp(got, want) != 0)
		fail_msg("%s:\n got [%s]\nwant [%s]", name, got, want);
	free(got);
}

static void test_formats(void **state)
{
	(void)state;
	static const struct {
		const char *name, *want;
	} cases[] = {
		{ "llama2", "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]"
			    " Hi there </s><s>[INST] Who are you [/INST]" },
		{ "mistral", "[INST] You are a helpful assistant\n\nHello [/INST]Hi there</s>"
			     "[INST] Who are you [/INST]" },
		{ "mistral-v1", " [INST] You are a helpful assistant\n\nHello [/INST] Hi there</s>"
				" [INST] Who are you [/INST]" },
		/* v3 places the system prompt before the last user message. */
		{ "mistral-v3", "[INST] Hello[/INST] Hi there</s>"
				"[INST] You are a helpful assistant\n\nWho are you[/INST]" },
		{ "mistral-v3-tekken", "[INST]Hello[/INST]Hi there</s>"
				       "[INST]You are a helpful assistant\n\nWho are you[/INST]" },
		{ "llama3", "<|start_header_id|>system<|end_header_id|>\n\nYou are a helpful assistant<|eot_id|>"
			    "<|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|>"
			    "<|start_header_id|>assistant<|end_header_id|>\n\nHi there<|eot_id|>"
			    "<|start_header_id|>user<|end_header_id|>\n\nWho are you<|eot_id|>"
			    "<|start_header_id|>assistant<|end_header_id|>\n\n" },
		{ "chatml", "<|im_start|>system\nYou are a helpful assistant<|im_end|>\n"
			    "<|im_start|>user\nHello<|im_end|>\n"
			    "<|im_start|>assistant\nHi there<|im_end|>\n"
			    "<|im_start|>user\nWho are you<|im_end|>\n"
			    "<|im_start|>assistant\n" },
		{ "zephyr", "<|system|>\nYou are a helpful assistant</s>\n<|user|>\nHello</s>\n"
			    "<|assistant|>\nHi there</s>\n<|user|>\nWho are you</s>\n<|assistant|>\n" },
		{ "phi3", "<|system|>\nYou are a helpful assistant<|end|>\n<|user|>\nHello<|end|>\n"
			  "<|assistant|>\nHi there<|end|>\n<|user|>\nWho are you<|end|>\n<|assistant|>\n" },
		{ "gemma", "<start_of_turn>user\nYou are a helpful assistant\n\nHello<end_of_turn>\n"
			   "<start_of_turn>model\nHi there<end_of_turn>\n"
			   "<start_of_turn>user\nWho are you<end_of_turn>\n<start_of_turn>model\n" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_render(cases[i].name, conv, N_CONV, true, cases[i].want);

	/* Every listed name renders, and the list covers every case above. */
	char names[256];
	snprintf(names, sizeof(names), "%s", pinfer_chat_template_names());
	size_t n_names = 0;
	for (char *save, *w = strtok_r(names, " ", &save); w; w = strtok_r(NULL, " ", &save)) {
		assert_string_equal(pinfer_chat_template_find(w), w);
		assert_true(pinfer_chat_render(w, conv, N_CONV, true, NULL, 0) > 0);
		n_names++;
	}
	assert_int_equal(n_names, sizeof(cases) / sizeof(cases[0]));
}

/* Without the generation prompt, a conversation ending with the assistant
 * renders as history; formats whose [/INST] is the prompt are unchanged. */
static void test_no_generation_prompt(void **state)
{
	(void)state;
	static const struct pinfer_chat_msg m[] = { { "user", "Hi" }, { "assistant", "Yo" } };
	expect_render("chatml", m, 2, false,
		      "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n");
	expect_render("llama3", m, 1, false, "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>");
	expect_render("llama2", m, 1, false, "[INST] Hi [/INST]");
	expect_render("llama2", m, 1, true, "[INST] Hi [/INST]");
	expect_render("chatml", NULL, 0, true, "<|im_start|>assistant\n");
}

/* Whitespace around contents is stripped where the official template
 * strips it (.strip() or | trim), and kept elsewhere. */
static void test_trim(void **state)
{
	(void)state;
	static const struct pinfer_chat_msg m[] = {
		{ "user", "  Q \n" },
		{ "assistant", "   A   " },
		{ "user", "R" },
	};
	expect_render("llama2", m, 3, true, "[INST] Q [/INST] A </s><s>[INST] R [/INST]");
	expect_render("mistral", m, 3, true, "[INST]   Q \n [/INST]   A   </s>[INST] R [/INST]");
	expect_render("mistral-v3", m, 3, true, "[INST]   Q \n[/INST] A</s>[INST] R[/INST]");
	expect_render("llama3", m, 2, false,
		      "<|start_header_id|>user<|end_header_id|>\n\nQ<|eot_id|>"
		      "<|start_header_id|>assistant<|end_header_id|>\n\nA<|eot_id|>");
	expect_render("chatml", m, 1, false, "<|im_start|>user\n  Q \n<|im_end|>\n");
	expect_render("gemma", m, 1, false, "<start_of_turn>user\nQ<end_of_turn>\n");
}

/* A system message in formats without a system turn: folded into the user
 * message that follows it, wherever it is; one with nothing to carry it is
 * refused rather than dropped. */
static void test_system_placement(void **state)
{
	(void)state;
	static const struct pinfer_chat_msg mid[] = {
		{ "user", "a" }, { "assistant", "b" }, { "system", "S" }, { "user", "c" },
	};
	expect_render("llama2", mid, 4, true,
		      "[INST] a [/INST] b </s><s>[INST] <<SYS>>\nS\n<</SYS>>\n\nc [/INST]");
	expect_render("chatml", mid, 4, true,
		      "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nb<|im_end|>\n"
		      "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nc<|im_end|>\n"
		      "<|im_start|>assistant\n");

	static const struct pinfer_chat_msg sys_only[] = { { "system", "S" } };
	static const struct pinfer_chat_msg sys_last[] = { { "user", "a" }, { "system", "S" } };
	static const struct pinfer_chat_msg two_sys[] = {
		{ "system", "S" }, { "user", "a" }, { "system", "T" }, { "user", "b" },
	};
	const char *folding[] = { "llama2", "mistral", "mistral-v3", "gemma" };
	for (size_t i = 0; i < sizeof(folding) / sizeof(folding[0]); i++) {
		assert_int_equal(pinfer_chat_render(folding[i], sys_only, 1, true, NULL, 0), -EINVAL);
		assert_int_equal(pinfer_chat_render(folding[i], sys_last, 2, true, NULL, 0), -EINVAL);
		assert_int_equal(pinfer_chat_render(folding[i], two_sys, 4, true, NULL, 0), -EINVAL);
	}
	/* Formats with a system turn take any of them. */
	assert_true(pinfer_chat_render("llama3", two_sys, 4, true, NULL, 0) > 0);
	assert_true(pinfer_chat_render("chatml", sys_only, 1, true, NULL, 0) > 0);
}

static void test_errors(void **state)
{
	(void)state;
	char buf[64];
	assert_int_equal(pinfer_chat_render("vicuna", conv, N_CONV, true, buf, sizeof(buf)), -ENOENT);
	assert_int_equal(pinfer_chat_render(NULL, conv, N_CONV, true, buf, sizeof(buf)), -ENOENT);
	assert_null(pinfer_chat_template_find("vicuna"));
	assert_null(pinfer_chat_template_find(NULL));
	assert_null(pinfer_chat_template_find("chatml "));

	static const struct pinfer_chat_msg tool[] = { { "user", "a" }, { "tool", "b" } };
	static const struct pinfer_chat_msg no_content[] = { { "user", NULL } };
	static const struct pinfer_chat_msg no_role[] = { { NULL, "a" } };
	static const struct pinfer_chat_msg upper[] = { { "User", "a" } };
	memset(buf, 'x', sizeof(buf));
	assert_int_equal(pinfer_chat_render("chatml", tool, 2, true, buf, sizeof(buf)), -EINVAL);
	/* Bad input is refused before anything is written. */
	assert_int_equal(buf[0], 'x');
	assert_int_equal(pinfer_chat_render("chatml", no_content, 1, true, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(pinfer_chat_render("chatml", no_role, 1, true, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(pinfer_chat_render("chatml", upper, 1, true, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(pinfer_chat_render("chatml", NULL, 1, true, buf, sizeof(buf)), -EINVAL);
}

/* A buffer that is too small gets the first cap bytes and not one more; the
 * return value is the size to retry with. */
static void test_small_buffer(void **state)
{
	(void)state;
	char *full = render("llama3", conv, N_CONV, true);
	size_t len = strlen(full);
	char buf[512];
	assert_true(len < sizeof(buf));
	size_t caps[] = { 0, 1, 7, len / 2, len - 1, len, len + 1 };
	for (size_t i = 0; i < sizeof(caps) / sizeof(caps[0]); i++) {
		memset(buf, '#', sizeof(buf));
		assert_int_equal(pinfer_chat_render("llama3", conv, N_CONV, true, buf, caps[i]), (int)len);
		size_t wrote = caps[i] < len ? caps[i] : len;
		assert_memory_equal(buf, full, wrote);
		for (size_t j = wrote; j < sizeof(buf); j++)
			assert_int_equal(buf[j], '#');
	}
	free(full);
}

/* Excerpts of the models' own tokenizer.chat_template strings, as stored
 * in their GGUF files (the Jinja source: "\\n" is Jinja's escape). */
static const char tmpl_llama2[] =
	"{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
	"{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}"
	"{% set system_message = false %}{% endif %}{% for message in loop_messages %}"
	"{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + "
	"system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = "
	"message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + "
	"content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + "
	"content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}";
static const char tmpl_mistral[] =
	"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != "
	"(loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate "
	"user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}"
	"{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}"
	"{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant "
	"roles are supported!') }}{% endif %}{% endfor %}";
static const char tmpl_mistral_v1[] =
	"{%- if message['role'] == 'user' %}\n        {%- if loop.first and system_message is "
	"defined %}\n            {{- ' [INST] ' + system_message + '\\n\\n' + message['content'] + "
	"' [/INST]' }}\n        {%- else %}\n            {{- ' [INST] ' + message['content'] + "
	"' [/INST]' }}";
static const char tmpl_mistral_v3[] =
	"{%- if tools is not none and (message == user_messages[-1]) %}\n            "
	"{{- \"[AVAILABLE_TOOLS] [\" }}\n{%- if loop.last and system_message is defined %}\n"
	"            {{- \"[INST] \" + system_message + \"\\n\\n\" + message[\"content\"] + "
	"\"[/INST]\" }}";
static const char tmpl_mistral_tekken[] =
	"{{- \"[AVAILABLE_TOOLS][\" }}\n{%- if loop.last and system_message is defined %}\n"
	"            {{- \"[INST]\" + system_message + \"\\n\\n\" + message[\"content\"] + "
	"\"[/INST]\" }}";
static const char tmpl_mistral_v7[] =
	"{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' + message['content'] + "
	"'[/SYSTEM_PROMPT]' }}{%- elif message['role'] == 'user' %}{{- '[INST]' + "
	"message['content'] + '[/INST]' }}";
static const char tmpl_llama3[] =
	"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
	"'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
	"trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
	"{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
	"{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";
static const char tmpl_qwen2[] =
	"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
	"{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}{% endif %}"
	"{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
	"{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
static const char tmpl_zephyr[] =
	"{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + "
	"message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n"
	"{{ '<|system|>\\n' + message['content'] + eos_token }}\n{% elif message['role'] == "
	"'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + eos_token }}\n{% endif %}\n"
	"{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n"
	"{% endfor %}";
static const char tmpl_gemma[] =
	"{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not "
	"supported') }}{% endif %}{% for message in messages %}{% if (message['role'] == "
	"'assistant') %}{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
	"{{ '<start_of_turn>' + role + '\\n' + message['content'] | trim + '<end_of_turn>\\n' }}"
	"{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\\n'}}{% endif %}";
static const char tmpl_phi3[] =
	"{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') %}"
	"{{'<|user|>' + '\\n' + message['content'] + '<|end|>' + '\\n' + '<|assistant|>' + '\\n'}}"
	"{% elif (message['role'] == 'assistant') %}{{message['content'] + '<|end|>' + '\\n'}}"
	"{% endif %}{% endfor %}";
/* Formats pinfer does not build in. */
static const char tmpl_vicuna[] =
	"{%- for message in messages %}{%- if message['role'] == 'system' -%}{{- '' + "
	"message['content'] + '\\n\\n' -}}{%- else -%}{%- if message['role'] == 'user' -%}"
	"{{-'USER: ' + message['content'] + '\\n'-}}{%- else -%}{{-'ASSISTANT: ' + "
	"message['content'] + '</s>\\n' -}}{%- endif -%}{%- endif -%}{%- endfor -%}";
static const char tmpl_glmedge[] =
	"{% for item in messages %}{% if item['role'] == 'system' %}<|system|>\\n{{ item['content'] }}"
	"{% elif item['role'] == 'user' %}<|user|>\\n{{ item['content'] }}{% elif item['role'] == "
	"'assistant' %}<|assistant|>\\n{{ item['content'] }}{% endif %}{% endfor %}<|assistant|>";

static void test_detect(void **state)
{
	(void)state;
	static const struct {
		const char *tmpl, *want;
	} cases[] = {
		{ tmpl_llama2, "llama2" },
		{ tmpl_mistral, "mistral" },
		{ tmpl_mistral_v1, "mistral-v1" },
		{ tmpl_mistral_v3, "mistral-v3" },
		{ tmpl_mistral_tekken, "mistral-v3-tekken" },
		{ tmpl_mistral_v7, NULL },
		{ tmpl_llama3, "llama3" },
		{ tmpl_qwen2, "chatml" },
		{ tmpl_zephyr, "zephyr" },
		{ tmpl_gemma, "gemma" },
		{ tmpl_phi3, "phi3" },
		{ tmpl_vicuna, NULL },
		{ tmpl_glmedge, NULL },
		{ "", NULL },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *got = pf_chat_detect(cases[i].tmpl, strlen(cases[i].tmpl));
		if (!cases[i].want ? got != NULL : !got || strcmp(got, cases[i].want) != 0)
			fail_msg("case %zu: detected %s, want %s", i, got ? got : "(none)",
				 cases[i].want ? cases[i].want : "(none)");
	}
	/* Only the given bytes are searched: the template is not a C string
	 * in the GGUF mapping. */
	assert_null(pf_chat_detect(tmpl_qwen2, 10));
}

/* stories260K.gguf rewritten with a tokenizer.chat_template key. */
static char *with_template(const char *tmpl)
{
	static char dir[] = "/tmp/pinfer-test-chat-XXXXXX";
	static char path[300];
	if (!path[0]) {
		assert_non_null(mkdtemp(dir));
		snprintf(path, sizeof(path), "%s/chat.gguf", dir);
	}
	struct gguf_file *src;
	struct pf_err err;
	if (gguf_open(&src, shared_path("models/stories260K/stories260K.gguf"), &err))
		fail_msg("%s", err.msg);
	struct gguf_writer *w = gguf_writer_new();
	assert_non_null(w);
	assert_true(gguf_writer_copy_kv(w, src, "") > 0);
	gguf_writer_set_str(w, "tokenizer.chat_template", tmpl);
	for (uint64_t i = 0; i < src->n_tensors; i++) {
		const struct gguf_tensor *t = &src->tensors[i];
		char name[96];
		gguf_str_copy(t->name, name, sizeof(name));
		assert_true(gguf_writer_add_tensor(w, name, t->n_dims, t->ne, t->type) >= 0);
	}
	if (gguf_writer_write_header(w, path, &err))
		fail_msg("%s", err.msg);
	for (uint64_t i = 0; i < src->n_tensors; i++)
		if (gguf_writer_write_tensor_data(w, (int)i, src->tensors[i].data,
						  src->tensors[i].nbytes, &err))
			fail_msg("%s", err.msg);
	if (gguf_writer_finish(w, &err))
		fail_msg("%s", err.msg);
	gguf_writer_free(w);
	gguf_close(src);
	return path;
}

static struct pinfer_model *open_model(const char *path)
{
	struct pinfer_model *m;
	struct pf_err err;
	if (pinfer_model_open(&m, path, NULL, &err))
		fail_msg("%s", err.msg);
	return m;
}

static void test_detect_model(void **state)
{
	(void)state;
	/* No template in the file: nothing to detect. */
	struct pinfer_model *m = open_model(shared_path("models/stories260K/stories260K.gguf"));
	size_t len = 1;
	assert_null(pinfer_model_chat_template(m, &len));
	assert_null(pinfer_chat_template_detect(m));
	pinfer_model_free(m);

	char *path = with_template(tmpl_llama3);
	m = open_model(path);
	const char *t = pinfer_model_chat_template(m, &len);
	assert_non_null(t);
	assert_int_equal(len, strlen(tmpl_llama3));
	assert_memory_equal(t, tmpl_llama3, len);
	assert_string_equal(pinfer_chat_template_detect(m), "llama3");
	pinfer_model_free(m);

	m = open_model(with_template(tmpl_vicuna));
	assert_null(pinfer_chat_template_detect(m));
	pinfer_model_free(m);
	unlink(path);
	*strrchr(path, '/') = 0;
	rmdir(path);
}

/* The convention in pinfer.h on the real Llama 2 vocabulary: BOS comes
 * from add_bos, "<s>" and "</s>" between turns become their control tokens
 * with parse_special, and the markers themselves are ordinary text. */
static void test_tokenize_llama2(void **state)
{
	(void)state;
	struct pinfer_model *m = open_model(shared_path("models/llama-2-tiny-random/llama-2-tiny-random.gguf"));
	char *text = render("llama2", conv, N_CONV, true);
	int32_t ids[256];
	int n = pinfer_tokenize(m, text, strlen(text), true, true, ids, 256);
	assert_true(n > 0 && n <= 256);
	const int32_t bos = pinfer_token_bos(m), eos = pinfer_token_eos(m);
	assert_int_equal(ids[0], bos);
	assert_true(ids[1] != bos);
	int n_bos = 0, n_eos = 0;
	for (int i = 0; i < n; i++) {
		n_bos += ids[i] == bos;
		n_eos += ids[i] == eos;
	}
	assert_int_equal(n_bos, 2);
	assert_int_equal(n_eos, 1);

	/* Each turn is encoded as Meta's reference code encodes it, on its own
	 * after BOS: the same "▁[" token opens both. */
	int second = -1;
	for (int i = 1; i < n; i++)
		if (ids[i] == bos)
			second = i;
	assert_true(second > 0 && second + 1 < n);
	assert_int_equal(ids[second + 1], ids[1]);
	char piece[16];
	assert_int_equal(pinfer_token_to_piece(m, ids[1], false, piece, sizeof(piece)), 2);
	assert_memory_equal(piece, " [", 2);

	/* Decoding gives the text back without the control tokens; the space
	 * that opens the second turn's encoding stays. */
	char out[512];
	int len = pinfer_detokenize(m, ids, (size_t)n, out, sizeof(out));
	assert_true(len > 0 && len < (int)sizeof(out));
	out[len] = 0;
	const char *want = "[INST] <<SYS>>\nYou are a helpful assistant\n<</SYS>>\n\nHello [/INST]"
			   " Hi there  [INST] Who are you [/INST]";
	if (strcmp(out, want) != 0)
		fail_msg("decoded [%s]\n   want [%s]", out, want);

	/* Without parse_special the markers stay text, so no inner BOS. */
	n = pinfer_tokenize(m, text, strlen(text), true, false, ids, 256);
	assert_true(n > 0 && n <= 256);
	n_bos = 0;
	for (int i = 0; i < n; i++)
		n_bos += ids[i] == bos;
	assert_int_equal(n_bos, 1);
	free(text);
	pinfer_model_free(m);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_formats),
		cmocka_unit_test(test_no_generation_prompt),
		cmocka_unit_test(test_trim),
		cmocka_unit_test(test_system_placement),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_small_buffer),
		cmocka_unit_test(test_detect),
		cmocka_unit_test(test_detect_model),
		cmocka_unit_test(test_tokenize_llama2),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
