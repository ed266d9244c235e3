"""Type stub of uwsgipy._core, the C core (csrc/)."""
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

PROTO_HTTP: int
PROTO_UWSGI: int
SLOT_SIZE: int
POLLER: str  # "epoll" or "poll"
LOG_4XX: int
LOG_5XX: int
LOG_VARS: Dict[str, int]

Logger = Callable[[int, str, Optional[BaseException]], None]
ListenerSpec = Tuple[int, int, str, str, str]  # fd, proto, SERVER_NAME, SERVER_PORT, log name

def check_ere(pattern: str) -> None: ...  # ValueError when regcomp(REG_EXTENDED) refuses it
def set_access_log(server: "Server", *, json: bool = ..., json_extra: Optional[bytes] = ...,
                   request_id: Optional[str] = ...) -> None: ...

class Server:
    requests: int
    stopping: bool
    stop_reason: Optional[str]
    asgi_tasks: int  # runner "asgi": ASGI apps running now
    def __init__(self, app: Callable[..., Any], listeners: Sequence[ListenerSpec], *,
                 logger: Logger, buffer_size: int = ..., max_fields: int = ...,
                 limit_post: int = ..., post_buffering: int = ...,
                 socket_timeout: float = ..., keepalive_timeout: float = ...,
                 access_log_fd: int = ..., multithread: bool = ..., multiprocess: bool = ...,
                 errors: Any = ..., tmpdir: Optional[str] = ..., max_requests: int = ...,
                 reload_on_rss: int = ..., stop_mercy: float = ...,
                 scoreboard: Optional[memoryview] = ...,
                 log_format: Optional[Tuple[Union[str, int], ...]] = ...,
                 log_filter: int = ..., log_xff: bool = ..., worker_id: int = ...,
                 write_exception: bool = ..., limit_request_line: int = ...,
                 limit_request_field_size: int = ..., header_timeout: float = ...,
                 body_timeout: float = ..., body_min_rate: float = ...,
                 add_headers: bytes = ..., min_lifetime: float = ...,
                 runner: str = ..., cores: int = ...,
                 wait_write: Optional[Callable[[int, float], bool]] = ...,
                 static: Optional[Dict[str, Any]] = ...,
                 mounts: Optional[Sequence[Tuple[str, Callable[..., Any]]]] = ...,
                 manage_script_name: bool = ...,
                 ws_max_size: int = ...,   # runner "asgi": bytes (websockets-max-size)
                 ws_ping: float = ...,     # seconds, 0 none (websockets-ping-freq)
                 ws_pong: float = ...      # seconds (websockets-pong-tolerance)
                 ) -> None: ...
    def serve_forever(self, wakeup_fd: int = ...) -> None: ...
    def app_thread(self, core: int) -> None: ...
    def fileno(self) -> int: ...
    # runner "external": the complete requests; runner "asgi": True (apps start as tasks);
    # None once the loop has ended
    def run_once(self, timeout: float = ...,
                 wakeup_fd: int = ...) -> Union[None, bool, List["Request"]]: ...
    def asgi_setup(self, loop: Any, state: Optional[Dict[str, Any]] = ...) -> None: ...
    def stop(self, graceful: bool = ..., timeout: float = ...,
             close_listeners: bool = ...) -> None: ...

class Request:
    def run(self, core: int) -> None: ...

class StartResponse:
    def __call__(self, status: str, response_headers: list,
                 exc_info: Optional[tuple] = ...) -> Callable[[bytes], None]: ...
    def write(self, data: bytes) -> None: ...

class FileWrapper:
    def __init__(self, filelike: Any, block_size: int = ...) -> None: ...
    def __iter__(self) -> Iterator[bytes]: ...
    def __next__(self) -> bytes: ...
    def close(self) -> None: ...
