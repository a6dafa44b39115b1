/* What the daemon's and the client's code both ask of a decoded message. */
#ifndef PINFER_PROTO_MESSAGE_H
#define PINFER_PROTO_MESSAGE_H

#include <stdint.h>

#include "pinfer.pb-c.h"

/* The request a reply answers; 0 for HelloReply, which answers none. */
uint64_t proto_reply_id(const Pinfer__ServerMessage *m);

#endif
