/* Chat templates: the engine-internal side of pinfer_chat_* (pinfer.h). */
#ifndef PINFER_CHAT_H
#define PINFER_CHAT_H

#include <stddef.h>

#include "pinfer.h"

/* The built-in template whose format a Jinja chat template (tmpl[0..len))
 * produces, recognised by the markers only that format uses; NULL when
 * none matches. */
const char *pf_chat_detect(const char *tmpl, size_t len);

#endif
