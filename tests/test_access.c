/* pinferd's access checks (daemon/access.c) against a user database the
 * test controls: which answers come at once and which later through the
 * loop, the cache, callers sharing a lookup and cancelling, a database
 * that fails, one that hangs past the deadline, the limit on lookup
 * threads, and freeing while a lookup hangs. Then the real NSS lookup.
 * Every wait is bounded; asserts check order and counts, never durations. */
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <pwd.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "access.h"
#include "loop.h"

/* Uids no test runs as: the daemon's own user would need no lookup. */
#define MEMBER 3999990001u
#define STRANGER 3999990002u
#define BROKEN 3999990003u

/* The user database: MEMBER is in the group, BROKEN fails, anyone else is
 * not in it. Lookups block while hold is set. */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool hold;
	int started, returned;
	gid_t group;
} db = { .lock = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER };

static int fake_lookup(uid_t uid, gid_t group)
{
	pthread_mutex_lock(&db.lock);
	db.started++;
	db.group = group;
	pthread_cond_broadcast(&db.cond);
	while (db.hold)
		pthread_cond_wait(&db.cond, &db.lock);
	db.returned++;
	pthread_cond_broadcast(&db.cond);
	pthread_mutex_unlock(&db.lock);
	return uid == MEMBER ? 1 : uid == BROKEN ? -EIO : 0;
}

static void db_hold(bool hold)
{
	pthread_mutex_lock(&db.lock);
	db.hold = hold;
	pthread_cond_broadcast(&db.cond);
	pthread_mutex_unlock(&db.lock);
}

static int db_count(const int *counter)
{
	pthread_mutex_lock(&db.lock);
	int n = *counter;
	pthread_mutex_unlock(&db.lock);
	return n;
}

/* Waits (5 s at most) until *counter reaches n. */
static void db_wait(const int *counter, int n)
{
	struct timespec deadline;
	clock_gettime(CLOCK_REALTIME, &deadline);
	deadline.tv_sec += 5;
	pthread_mutex_lock(&db.lock);
	while (*counter < n && pthread_cond_timedwait(&db.cond, &db.lock, &deadline) == 0)
		;
	int got = *counter;
	pthread_mutex_unlock(&db.lock);
	assert_int_equal(got, n);
}

static int reset_db(void **state)
{
	(void)state;
	pthread_mutex_lock(&db.lock);
	db.hold = false;
	db.started = db.returned = 0;
	db.group = (gid_t)-1;
	pthread_mutex_unlock(&db.lock);
	return 0;
}

/* A caller waiting for an answer. */
struct caller {
	struct access_wait w;
	int calls;
	enum access_answer answer;
	struct caller *cancels;  /* cancelled from this one's callback */
};

static struct loop *loop;
static int outstanding;  /* answers the test waits for */
static bool timed_out;

static void on_answer(void *data, enum access_answer answer)
{
	struct caller *c = data;
	c->calls++;
	c->answer = answer;
	if (c->cancels)
		access_cancel(&c->cancels->w);
	if (--outstanding == 0)
		loop_stop(loop);
}

static enum access_answer check(struct access *a, uid_t uid, gid_t gid, struct caller *c)
{
	return access_check(a, uid, gid, &c->w, on_answer, c);
}

static void on_too_long(struct loop *l, void *data)
{
	(void)data;
	timed_out = true;
	loop_stop(l);
}

/* Runs the loop until n more answers came (5 s at most). */
static void run_until_answered(int n)
{
	outstanding = n;
	timed_out = false;
	uint64_t t = loop_timer_add(loop, 5000, on_too_long, NULL);
	assert_int_not_equal(t, 0);
	assert_int_equal(loop_run(loop), 0);
	loop_timer_cancel(loop, t);
	assert_false(timed_out);
}

static void stop_cb(struct loop *l, void *data)
{
	(void)data;
	loop_stop(l);
}

/* Runs the loop for ms. */
static void run_for(uint64_t ms)
{
	assert_int_not_equal(loop_timer_add(loop, ms, stop_cb, NULL), 0);
	assert_int_equal(loop_run(loop), 0);
}

static struct access *new_access(const struct access_config *cfg)
{
	struct access_config c = cfg ? *cfg : (struct access_config){ 0 };
	if (!c.lookup)
		c.lookup = fake_lookup;
	assert_int_equal(loop_new(&loop), 0);
	struct access *a;
	assert_int_equal(access_new(&a, loop, &c), 0);
	return a;
}

static void free_access(struct access *a)
{
	access_free(a);
	loop_free(loop);
	loop = NULL;
}

/* Root, the daemon's own user and its group need no lookup; neither does
 * a peer whose credentials are unknown. */
static void test_immediate(void **state)
{
	(void)state;
	struct access *a = new_access(NULL);
	struct caller c = { 0 };
	assert_int_equal(check(a, 0, (gid_t)-1, &c), ACCESS_ALLOWED);
	assert_int_equal(check(a, getuid(), (gid_t)-1, &c), ACCESS_ALLOWED);
	assert_int_equal(check(a, STRANGER, getgid(), &c), ACCESS_ALLOWED);
	assert_int_equal(check(a, (uid_t)-1, (gid_t)-1, &c), ACCESS_DENIED);
	run_for(20);
	assert_int_equal(c.calls, 0);
	assert_int_equal(db_count(&db.started), 0);
	free_access(a);
}

/* Anyone else is looked up off the loop thread, answered through the
 * loop, then from the cache until access_forget. */
static void test_lookup_and_cache(void **state)
{
	(void)state;
	struct access *a = new_access(NULL);
	struct caller member = { 0 }, stranger = { 0 }, again = { 0 };
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &member), ACCESS_PENDING);
	assert_int_equal(check(a, STRANGER, 4242, &stranger), ACCESS_PENDING);
	/* Never from inside access_check. */
	assert_int_equal(member.calls + stranger.calls, 0);
	run_until_answered(2);
	assert_int_equal(member.calls, 1);
	assert_int_equal(member.answer, ACCESS_ALLOWED);
	assert_int_equal(stranger.calls, 1);
	assert_int_equal(stranger.answer, ACCESS_DENIED);
	/* The group asked about is the daemon's, taken at access_new. */
	pthread_mutex_lock(&db.lock);
	gid_t group = db.group;
	pthread_mutex_unlock(&db.lock);
	assert_int_equal(group, getgid());
	assert_int_equal(db_count(&db.started), 2);

	assert_int_equal(check(a, MEMBER, (gid_t)-1, &again), ACCESS_ALLOWED);
	assert_int_equal(check(a, STRANGER, (gid_t)-1, &again), ACCESS_DENIED);
	assert_int_equal(db_count(&db.started), 2);

	access_forget(a);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &again), ACCESS_PENDING);
	run_until_answered(1);
	assert_int_equal(again.answer, ACCESS_ALLOWED);
	assert_int_equal(db_count(&db.started), 3);
	free_access(a);
}

/* Callers of one uid share its lookup; one cancelled is never called,
 * also when another's callback cancels it. */
static void test_share_and_cancel(void **state)
{
	(void)state;
	struct access *a = new_access(NULL);
	struct caller c1 = { 0 }, c2 = { 0 }, c3 = { 0 }, c4 = { 0 };
	db_hold(true);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &c1), ACCESS_PENDING);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &c2), ACCESS_PENDING);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &c3), ACCESS_PENDING);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &c4), ACCESS_PENDING);
	db_wait(&db.started, 1);
	access_cancel(&c2.w);
	access_cancel(&c2.w);  /* twice: a no-op */
	c3.cancels = &c4;      /* callers answer in arrival order */
	db_hold(false);
	run_until_answered(2);
	assert_int_equal(c1.calls, 1);
	assert_int_equal(c1.answer, ACCESS_ALLOWED);
	assert_int_equal(c2.calls, 0);
	assert_int_equal(c3.calls, 1);
	assert_int_equal(c4.calls, 0);
	run_for(20);
	assert_int_equal(c4.calls, 0);
	assert_int_equal(db_count(&db.started), 1);
	free_access(a);
}

/* A failing database denies, and is asked again next time. */
static void test_failure_not_cached(void **state)
{
	(void)state;
	struct access *a = new_access(NULL);
	struct caller c = { 0 };
	assert_int_equal(check(a, BROKEN, (gid_t)-1, &c), ACCESS_PENDING);
	run_until_answered(1);
	assert_int_equal(c.answer, ACCESS_UNKNOWN);
	assert_int_equal(check(a, BROKEN, (gid_t)-1, &c), ACCESS_PENDING);
	run_until_answered(1);
	assert_int_equal(c.answer, ACCESS_UNKNOWN);
	assert_int_equal(db_count(&db.started), 2);
	free_access(a);
}

/* A database that hangs: the callers hear ACCESS_UNKNOWN at the deadline,
 * later callers at once while it still hangs, and its late answer is
 * cached. */
static void test_deadline(void **state)
{
	(void)state;
	struct access *a = new_access(&(struct access_config){ .wait_ms = 50 });
	struct caller c = { 0 }, later = { 0 };
	db_hold(true);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &c), ACCESS_PENDING);
	run_until_answered(1);
	assert_int_equal(c.answer, ACCESS_UNKNOWN);
	assert_int_equal(db_count(&db.returned), 0);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &later), ACCESS_UNKNOWN);
	db_hold(false);
	db_wait(&db.returned, 1);
	/* The answer travels back through the loop. */
	enum access_answer got = ACCESS_UNKNOWN;
	for (int i = 0; i < 500 && got != ACCESS_ALLOWED; i++) {
		run_for(10);
		got = check(a, MEMBER, (gid_t)-1, &later);
	}
	assert_int_equal(got, ACCESS_ALLOWED);
	assert_int_equal(later.calls, 0);
	assert_int_equal(db_count(&db.started), 1);
	free_access(a);
}

/* With every lookup thread busy, the next uid waits its turn. */
static void test_thread_limit(void **state)
{
	(void)state;
	struct access *a = new_access(&(struct access_config){ .max_threads = 1 });
	struct caller c1 = { 0 }, c2 = { 0 };
	db_hold(true);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &c1), ACCESS_PENDING);
	db_wait(&db.started, 1);
	assert_int_equal(check(a, STRANGER, (gid_t)-1, &c2), ACCESS_PENDING);
	run_for(50);
	assert_int_equal(db_count(&db.started), 1);
	db_hold(false);
	run_until_answered(2);
	assert_int_equal(c1.answer, ACCESS_ALLOWED);
	assert_int_equal(c2.answer, ACCESS_DENIED);
	assert_int_equal(db_count(&db.started), 2);
	free_access(a);
}

/* Freeing does not wait for a hung lookup; the thread cleans up when it
 * returns (under ASan, a leak if not), and a waiter left behind can still
 * be cancelled. */
static void test_free_while_hung(void **state)
{
	(void)state;
	struct access *a = new_access(NULL);
	struct caller c = { 0 };
	db_hold(true);
	assert_int_equal(check(a, MEMBER, (gid_t)-1, &c), ACCESS_PENDING);
	db_wait(&db.started, 1);
	free_access(a);
	access_cancel(&c.w);
	assert_int_equal(c.calls, 0);
	db_hold(false);
	db_wait(&db.returned, 1);
	/* What the thread does after the lookup takes microseconds; the
	 * leak check runs at exit, after the tests below. */
	struct timespec pause = { 0, 50 * 1000000 };
	nanosleep(&pause, NULL);
	assert_int_equal(c.calls, 0);
}

/* The real user database: root's primary group, nobody not in root's, and
 * a uid no one has. */
static void test_nss(void **state)
{
	(void)state;
	struct passwd *root = getpwuid(0);
	if (root)
		assert_int_equal(access_nss_in_group(0, root->pw_gid), 1);
	struct passwd *nobody = getpwuid(65534);
	if (nobody && nobody->pw_gid != 0)
		assert_int_equal(access_nss_in_group(65534, 0), 0);
	if (!getpwuid(3999999999u))
		assert_int_equal(access_nss_in_group(3999999999u, 0), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_immediate, reset_db),
		cmocka_unit_test_setup(test_lookup_and_cache, reset_db),
		cmocka_unit_test_setup(test_share_and_cancel, reset_db),
		cmocka_unit_test_setup(test_failure_not_cached, reset_db),
		cmocka_unit_test_setup(test_deadline, reset_db),
		cmocka_unit_test_setup(test_thread_limit, reset_db),
		cmocka_unit_test_setup(test_free_while_hung, reset_db),
		cmocka_unit_test(test_nss),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
