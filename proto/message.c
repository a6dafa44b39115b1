#include "message.h"

uint64_t proto_reply_id(const Pinfer__ServerMessage *m)
{
	switch (m->msg_case) {
	case PINFER__SERVER_MESSAGE__MSG_ERROR: return m->error->request_id;
	case PINFER__SERVER_MESSAGE__MSG_TOKEN: return m->token->request_id;
	case PINFER__SERVER_MESSAGE__MSG_DONE: return m->done->request_id;
	case PINFER__SERVER_MESSAGE__MSG_TOKENIZE_REPLY: return m->tokenize_reply->request_id;
	case PINFER__SERVER_MESSAGE__MSG_DETOKENIZE_REPLY: return m->detokenize_reply->request_id;
	case PINFER__SERVER_MESSAGE__MSG_LIST_MODELS_REPLY: return m->list_models_reply->request_id;
	case PINFER__SERVER_MESSAGE__MSG_STATUS_REPLY: return m->status_reply->request_id;
	case PINFER__SERVER_MESSAGE__MSG_PONG: return m->pong->request_id;
	case PINFER__SERVER_MESSAGE__MSG_LOAD_MODEL_REPLY: return m->load_model_reply->request_id;
	case PINFER__SERVER_MESSAGE__MSG_UNLOAD_MODEL_REPLY: return m->unload_model_reply->request_id;
	default: return 0;
	}
}
