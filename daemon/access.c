#include "access.h"

#include <grp.h>
#include <pwd.h>
#include <stdlib.h>
#include <unistd.h>

/* Whether the account uid belongs to group, by its password entry and
 * the group database; false when either lookup fails. */
static bool user_in_group(uid_t uid, gid_t group)
{
	long size = sysconf(_SC_GETPW_R_SIZE_MAX);
	if (size <= 0)
		size = 16384;
	char *buf = malloc((size_t)size);
	if (!buf)
		return false;
	struct passwd pw, *found = NULL;
	bool member = false;
	if (!getpwuid_r(uid, &pw, buf, (size_t)size, &found) && found) {
		if (pw.pw_gid == group) {
			member = true;
		} else {
			/* The first call only counts the groups. */
			int n = 0;
			getgrouplist(pw.pw_name, pw.pw_gid, NULL, &n);
			gid_t *groups = n > 0 ? malloc((size_t)n * sizeof(*groups)) : NULL;
			if (groups && getgrouplist(pw.pw_name, pw.pw_gid, groups, &n) < 0)
				n = 0;
			for (int i = 0; groups && i < n; i++)
				member |= groups[i] == group;
			free(groups);
		}
	}
	free(buf);
	return member;
}

bool access_may_control_models(uid_t uid, gid_t gid)
{
	if (uid == 0 || uid == getuid())
		return true;
	gid_t group = getgid();
	return gid == group || user_in_group(uid, group);
}
