"""Every limit of the local server's transport, in one place, each with why its number.

The server listens on 127.0.0.1 only, but any local process may connect: another user's,
a container sharing the host network, a sandboxed app, a stuck client of the person's
own. None of them may wedge it, starve it of threads or descriptors, or (in the app,
where the server lives in the GUI process) starve the window. These numbers bound what
one connection may cost and for how long. Code reads them as ``limits.NAME`` at the
moment it needs them, so a test can shorten one with ``monkeypatch``.
"""

from __future__ import annotations

MAX_BODY = 8 * 1024 * 1024
"""Largest request body read, in bytes. A long conversation is a few hundred KiB of JSON;
8 MiB is ten times the longest chat a 128k-token context can hold, and small enough that
a few at once cannot hurt a desktop's memory."""

MAX_CONNECTIONS = 32
"""Open connections at once; the next one is answered 503 at once and closed. Replies
are made one at a time anyway (the turn), so more only wait in line; 32 leaves room for
an agent framework's parallel requests, while 32 threads and descriptors stay far below
the 256 descriptors a macOS process gets by default (1,024 on Linux), so the GUI's own
files, pipes and threads never run out (review S4: 1,018 idle connections did)."""

REQUEST_READ_S = 10.0
"""Seconds from the connection's arrival until its request line, headers and body have
all arrived; then 408 and close. On loopback a real client sends them in milliseconds;
a connection that sends nothing, or a byte at a time (slowloris), would otherwise hold a
thread and one of the connections above for ever."""

WRITE_STALL_S = 15.0
"""Seconds a write may wait for a client that has stopped reading before the client
counts as gone: its reply is cancelled and the turn passes on (review S3: one stalled
stream held every other request for ever). Every other request waits this long behind
it, so it is kept well under a client's usual 30 s patience (the review's probe waits
25 s for the next answer); a reading client, however slow its machine, drains a socket
buffer far sooner, and a paused debugger loses its stream after this long."""

HANGUP_POLL_S = 0.25
"""How often a request waiting for the model checks that its client is still
connected, so a client that hangs up stops costing model time within this long."""

LINGER_S = 2.0
"""After the answer is sent, how long the server keeps reading (and discarding) what the
client still sends before it closes, so that closing with unread bytes does not reset
the connection and destroy the answer (a 401 to a big body arrived as a reset)."""

LINGER_BYTES = MAX_BODY + 64 * 1024
"""At most this much is discarded while lingering: any body the server accepts, plus
its headers. A client sending more is cut off (it was told 413)."""

ACCEPT_BACKOFF_S = 0.1
"""Pause after ``accept`` fails for want of descriptors (EMFILE/ENFILE), so the accept
loop does not spin a core while the process is out of them (review S4: 4.8 s of CPU in 5 s)."""

QUEUE_WAIT_S = 600.0
"""How long a request waits in line for the model before 503: long enough for a queue
of long replies on a CPU, short enough that a client is told rather than left hanging."""

REPLY_IDLE_S = 600.0
"""How long a reply may go without any event from the worker before 504. An idle limit,
not a whole-reply deadline: a long reply that keeps coming is never cut, while a worker
that stopped answering is (a big model's first token on a CPU can take minutes)."""

MIN_KEY_LENGTH = 20
"""Shortest ``$HEARTH_API_KEY`` accepted: 20 characters of a random key are ~120 bits,
out of reach of guessing over a local socket; ``HEARTH_API_KEY=1`` is no key. The
generated key is 50."""
