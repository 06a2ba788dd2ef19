"""Locust load tests of the gateway, over HTTP and gRPC (docs/loadtest.md).

locustfile    what `locust -f` loads: the users, the command-line options, the verdict at exit
scenario      the typed scenario (task mix, images, deadlines, limits), read from YAML
images        the images sent: synthetic radiographs (PNG, DICOM) or a data folder's test split
outcome       one answer -> ok / shed / partly shed / failed (shed is not a failure)
verdict       the run's rows -> rates, percentiles, breached limits, the summary JSON
grpc_user     a Locust User on the gateway's gRPC API (grpcio under gevent)
http_user     a Locust FastHttpUser on the gateway's HTTP/JSON twin
scenario.yaml the default scenario of `make loadtest`

Only locustfile, grpc_user and http_user import Locust (which monkey-patches the process with
gevent); the other modules are plain and unit-tested in tests/loadtest/.
"""

__all__ = [
    "grpc_user",
    "http_user",
    "images",
    "locustfile",
    "outcome",
    "scenario",
    "settings",
    "tasks",
    "verdict",
    "workload",
]
