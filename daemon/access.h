/* Who may change what pinferd has loaded: the same rule for socket clients
 * (SO_PEERCRED) and D-Bus callers (GetConnectionUnixUser). */
#ifndef PINFERD_ACCESS_H
#define PINFERD_ACCESS_H

#include <stdbool.h>
#include <sys/types.h>

/* Root, the daemon's own user, and users whose primary group (gid, or
 * (gid_t)-1 when unknown) or supplementary groups include the daemon's
 * group. Looks the user's groups up through NSS. */
bool access_may_control_models(uid_t uid, gid_t gid);

#endif
