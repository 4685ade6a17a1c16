"""A quiet call through grpcio, to check the agent's keepalive against it.

Usage: quiet_call.py TARGET STUB_DIR MODE
MODE "defaults" uses grpcio's default channel options (no client pings);
MODE "pinging" makes grpcio ping every second, even without calls, as
some clients are configured. Either way the agent pings too. The call runs
a command that is silent for 3 s; the script prints one JSON object with
what came back, which tests/interop.rs checks.
"""

import json
import sys

target, stub_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, stub_dir)

import grpc  # noqa: E402
import remote_pb2 as pb  # noqa: E402
import remote_pb2_grpc as rpc  # noqa: E402

options = []
if mode == "pinging":
    options = [
        ("grpc.keepalive_time_ms", 1000),
        ("grpc.keepalive_timeout_ms", 2000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
    ]

report = {"mode": mode, "stdout": "", "exit": None, "error": None}
with grpc.insecure_channel(target, options=options) as channel:
    agent = rpc.RemoteAgentStub(channel)
    try:
        request = pb.ExecuteRequest(command="sleep 3; echo quiet")
        for response in agent.Execute(request, timeout=20):
            case = response.WhichOneof("event")
            if case == "output":
                report["stdout"] += response.output.data.decode()
            elif case == "exited":
                report["exit"] = response.exited.exit_code
        # The channel must still work after the quiet call.
        report["after"] = agent.GetSystemInfo(pb.GetSystemInfoRequest(), timeout=10).hostname
    except grpc.RpcError as error:
        report["error"] = f"{error.code().name}: {error.details()}"
print(json.dumps(report))
