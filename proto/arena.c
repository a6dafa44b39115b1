#include "arena.h"

#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>

/* Every allocation is aligned for any type, as malloc's would be. */
#define ARENA_ALIGN alignof(max_align_t)
/* The first chunk's size: most client messages (a Generate with a short
 * prompt) fit, so decoding them is one bump allocation after warm-up. */
#define ARENA_CHUNK_MIN 4096
/* reset keeps a chunk up to this size for the next message; bigger ones go
 * back to malloc so one large frame does not pin memory. */
#define ARENA_KEEP (64 * 1024)

struct proto_arena_chunk {
	struct proto_arena_chunk *next;
	size_t size;  /* bytes of data */
	size_t used;
	alignas(max_align_t) unsigned char data[];
};

#define CHUNK_HEADER offsetof(struct proto_arena_chunk, data)

static void *arena_alloc(void *data, size_t n)
{
	struct proto_arena *a = data;
	/* protobuf-c may ask for 0 bytes (an empty field); it still wants a
	 * usable pointer, so give it one aligned unit. */
	if (n == 0)
		n = 1;
	if (n > SIZE_MAX - ARENA_ALIGN)
		goto fail;
	n = (n + ARENA_ALIGN - 1) & ~(size_t)(ARENA_ALIGN - 1);

	struct proto_arena_chunk *c = a->chunks;
	if (!c || c->size - c->used < n) {
		/* A new chunk, doubling so a message takes O(log n) mallocs;
		 * the old chunk's tail is abandoned until reset. */
		size_t want = c ? 2 * c->size : ARENA_CHUNK_MIN - CHUNK_HEADER;
		if (want < n)
			want = n;
		if (a->taken >= a->cap || a->cap - a->taken <= CHUNK_HEADER)
			goto fail;
		size_t room = a->cap - a->taken - CHUNK_HEADER;
		if (n > room)
			goto fail;
		if (want > room)
			want = room;
		c = malloc(CHUNK_HEADER + want);
		if (!c)
			goto fail;
		c->size = want;
		c->used = 0;
		c->next = a->chunks;
		a->chunks = c;
		a->taken += CHUNK_HEADER + want;
	}
	void *p = c->data + c->used;
	c->used += n;
	return p;
fail:
	a->exhausted = true;
	return NULL;
}

/* Memory comes back on reset; protobuf-c frees only on its error paths and
 * in free_unpacked, which arena users never call. */
static void arena_free(void *data, void *p)
{
	(void)data;
	(void)p;
}

void proto_arena_init(struct proto_arena *a, size_t cap)
{
	*a = (struct proto_arena){
		.allocator = { .alloc = arena_alloc, .free = arena_free, .allocator_data = a },
		.cap = cap,
	};
}

ProtobufCAllocator *proto_arena_allocator(struct proto_arena *a)
{
	/* Re-pointed here, not only in init, so an arena struct that was
	 * copied or moved after init still hands out its own address. */
	a->allocator.allocator_data = a;
	return &a->allocator;
}

void proto_arena_reset(struct proto_arena *a)
{
	/* Chunks are newest (largest) first: keep the first one small enough. */
	struct proto_arena_chunk *keep = NULL;
	struct proto_arena_chunk *c = a->chunks;
	while (c) {
		struct proto_arena_chunk *next = c->next;
		if (!keep && CHUNK_HEADER + c->size <= ARENA_KEEP)
			keep = c;
		else
			free(c);
		c = next;
	}
	a->chunks = keep;
	a->taken = 0;
	if (keep) {
		keep->next = NULL;
		keep->used = 0;
		a->taken = CHUNK_HEADER + keep->size;
	}
	a->exhausted = false;
}

void proto_arena_destroy(struct proto_arena *a)
{
	struct proto_arena_chunk *c = a->chunks;
	while (c) {
		struct proto_arena_chunk *next = c->next;
		free(c);
		c = next;
	}
	a->chunks = NULL;
	a->taken = 0;
	a->exhausted = false;
}
