/* A capped arena for decoding protocol messages.
 *
 * protobuf-c's unpack allocates every string, repeated array and submessage
 * separately, and a few wire bytes can ask for much more memory than they
 * occupy (an empty repeated submessage is 2 bytes on the wire and a whole
 * struct plus a pointer once decoded). Decoding through this arena bounds
 * what one hostile frame can make the daemon allocate: once `cap` bytes are
 * taken every allocation fails, and unpack fails cleanly.
 *
 * Lifetime: a decoded message lives in the arena until proto_arena_reset().
 * The daemon decodes, dispatches (copying out what outlives the frame,
 * e.g. a Generate's prompt), then resets. free() through the allocator does
 * nothing; memory comes back only on reset or destroy.
 *
 * Memory is taken from malloc in growing chunks, so an arena with a large
 * cap costs nothing until a large message arrives, and reset gives big
 * chunks back so one large frame does not pin memory for the connection's
 * life. Not thread-safe: one arena per thread (or connection). */
#ifndef PINFER_PROTO_ARENA_H
#define PINFER_PROTO_ARENA_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

struct proto_arena_chunk;

struct proto_arena {
	ProtobufCAllocator allocator;     /* the view handed to protobuf-c */
	struct proto_arena_chunk *chunks; /* newest first; the newest is bumped */
	size_t cap;                       /* most bytes taken from malloc at once */
	size_t taken;                     /* bytes taken from malloc (chunks, headers included) */
	bool exhausted;                   /* an allocation failed since the last reset */
};

/* cap counts everything the arena mallocs, chunk headers included. Sets up
 * an empty arena: nothing is allocated yet. */
void proto_arena_init(struct proto_arena *a, size_t cap);

/* The allocator to pass to *__unpack(). Allocations fail (return NULL)
 * once they would take the arena over its cap, or when malloc fails; both
 * set a->exhausted so a failed decode can say which limit it met. */
ProtobufCAllocator *proto_arena_allocator(struct proto_arena *a);

/* Forgets every allocation (messages decoded from the arena become invalid)
 * and clears exhausted. Keeps one small chunk for the next message. */
void proto_arena_reset(struct proto_arena *a);

/* Frees everything; the arena may be initialized again. */
void proto_arena_destroy(struct proto_arena *a);

#endif
