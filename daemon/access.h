/* Who may change what pinferd has loaded: the same rule for socket clients
 * (SO_PEERCRED) and D-Bus callers (GetConnectionUnixUser). Root, the
 * daemon's own user, and users whose primary group (the peer's gid, or the
 * one in their password entry) or supplementary groups include the
 * daemon's group.
 *
 * The group part asks the user database (NSS), which may be LDAP or sssd
 * and take seconds, or hang: those lookups run on threads of their own,
 * never on the loop thread, and their answers are kept per uid for a while
 * (ACCESS_CACHE_MS). A check that needs one answers later, through a
 * callback on the loop thread, and never later than ACCESS_WAIT_MS.
 *
 * Loop thread only. */
#ifndef PINFERD_ACCESS_H
#define PINFERD_ACCESS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "loop.h"

/* How long an answer of the user database is reused. A user added to or
 * removed from the group waits at most this long (or a SIGHUP). */
#define ACCESS_CACHE_MS 30000
/* The longest a caller waits for the user database: a D-Bus caller's own
 * call times out after 25 s by default, and should hear why before. */
#define ACCESS_WAIT_MS 10000
/* Lookups (of different uids) running at once; the next wait their turn. */
#define ACCESS_MAX_THREADS 4
/* Users whose answers are kept; the one closest to expiry makes room. */
#define ACCESS_CACHE_SIZE 64

enum access_answer {
	ACCESS_DENIED,
	ACCESS_ALLOWED,
	/* The user database failed or did not answer in time: not allowed
	 * either, as before a lookup could be slow, but said apart so the
	 * caller can be told why. */
	ACCESS_UNKNOWN,
	/* access_check only: the answer comes through the callback. */
	ACCESS_PENDING,
};

/* answer: ACCESS_DENIED, ACCESS_ALLOWED or ACCESS_UNKNOWN. May call any
 * function here, access_free aside. */
typedef void access_done_fn(void *data, enum access_answer answer);

struct access_lookup;

/* Where one caller waits for an answer: part of the caller's own object,
 * zeroed before its first use. The fields are access.c's. */
struct access_wait {
	access_done_fn *fn;
	void *data;
	struct access_lookup *lookup;  /* NULL: not waiting */
	struct access_wait *next;
};

/* The user database: 1 when uid's password entry or supplementary groups
 * have group, 0 when not (also when there is no such user), a negative
 * errno when the lookup failed. Runs on a lookup thread. */
typedef int access_lookup_fn(uid_t uid, gid_t group);

/* What tests change; NULL or zeroed fields: the defaults above, and NSS
 * (getpwuid_r, getgrouplist). */
struct access_config {
	access_lookup_fn *lookup;
	uint64_t wait_ms;
	uint64_t cache_ms;
	int max_threads;
};

struct access;

/* Takes the daemon's uid and gid now: they never change afterwards. */
int access_new(struct access **out, struct loop *l, const struct access_config *cfg);
/* Takes NULL. Waiters left are dropped without a call. Does not wait for
 * lookups still running (a hung user database must not hold up exit):
 * they end on their own and drop their answers. */
void access_free(struct access *a);

/* May uid (with primary group gid, (gid_t)-1 when unknown) load and evict
 * models? Answers at once for root, the daemon's user and group, and users
 * whose answer is cached; otherwise returns ACCESS_PENDING, and fn(data,
 * answer) follows on the loop thread, never from inside this call, unless
 * access_cancel(w) comes first. w must not be waiting already. */
enum access_answer access_check(struct access *a, uid_t uid, gid_t gid, struct access_wait *w,
				access_done_fn *fn, void *data);
/* w's callback will not be called. No-op when w is not waiting. */
void access_cancel(struct access_wait *w);
/* Forgets the cached answers (SIGHUP: group changes take effect now). */
void access_forget(struct access *a);

/* NSS's answer (the default lookup); for tests. */
int access_nss_in_group(uid_t uid, gid_t group);

#endif
