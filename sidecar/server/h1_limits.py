"""The proxy listener's limits and timings, in one place.

The server and its connections both read these; kept apart from either so
the numbers that bound a caller's head, body, pace and connection count can be
read and tuned together.
"""

MAX_HEAD_BYTES = 64 * 1024  # request line and headers together
HIGH_WATER = 256 * 1024  # unsent bytes at which a stream waits for its caller
IDLE_TIMEOUT_S = 75.0
HEAD_TIMEOUT_S = 30.0  # from the first byte of a request (or the connection) to its last header
BODY_TIMEOUT_S = 60.0  # from the end of the head to the end of the body
BODY_MIN_RATE = 16 * 1024  # bytes a second, averaged over the body so far
BODY_RATE_GRACE_S = 5.0  # a body is not judged on its rate before this
MAX_CONNECTIONS = 1024
BUSY_RETRY_AFTER = "1"  # seconds, on a 503 for too many connections or bytes held
HANGUP_CHECK_S = 0.5  # how often a read-paused connection is polled for a hang-up
TRIM_AFTER_BYTES = 1024 * 1024  # a body this large is followed by a malloc_trim
TRIM_DELAY_S = 0.5  # trims are coalesced: at most one per this long
LINGER_S = 2.0  # reading (and dropping) a refused body so the caller sees the answer
MAX_QUEUED = 8  # pipelined requests parsed ahead before reading pauses
BACKLOG = 512
