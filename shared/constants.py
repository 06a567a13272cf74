"""Protocol constants shared with FastChat: error codes and user-facing limits."""

from enum import IntEnum


class ErrorCode(IntEnum):
    """FastChat's error codes (modelled on OpenAI's), carried in ``error_code`` fields."""

    OK = 0
    VALIDATION_TYPE_ERROR = 40001
    INVALID_AUTH_KEY = 40101
    INCORRECT_AUTH_KEY = 40102
    NO_PERMISSION = 40103
    INVALID_MODEL = 40301
    PARAM_OUT_OF_RANGE = 40302
    CONTEXT_OVERFLOW = 40303
    RATE_LIMIT = 42901
    QUOTA_EXCEEDED = 42902
    ENGINE_OVERLOADED = 42903
    INTERNAL_ERROR = 50001
    CUDA_OUT_OF_MEMORY = 50002
    GRADIO_REQUEST_ERROR = 50003
    GRADIO_STREAM_UNKNOWN_ERROR = 50004
    CONTROLLER_NO_WORKER = 50005
    CONTROLLER_WORKER_TIMEOUT = 50006


# Web chat limits, as FastChat's web server has them: characters per message, turns per chat.
INPUT_CHAR_LEN_LIMIT = 2560
CONVERSATION_LEN_LIMIT = 50
CONVERSATION_LIMIT_MSG = (
    "You have reached the conversation length limit. Please clear history and start a new "
    "conversation."
)
# FastChat's words for a message its moderation check flagged (the web chat's --moderate).
MODERATION_MSG = (
    "YOUR INPUT VIOLATES OUR CONTENT MODERATION GUIDELINES. PLEASE FIX YOUR INPUT AND TRY AGAIN."
)
