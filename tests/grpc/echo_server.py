"""A gRPC server for tests/grpc.rs: service echo.Echo over cleartext HTTP/2 on 127.0.0.1.

Messages are raw bytes (no protobuf, so no generated code): Say answers b"hello " + the request,
Count streams the numbers 0..n-1, Fail ends with NOT_FOUND. Say and Count set a trailing metadata
entry `x-echo-trailer`, which travels in the response's HTTP/2 trailers beside grpc-status.
Prints the port it listens on, then serves until killed.
"""
from concurrent import futures

import grpc


def say(request, context):
    context.set_trailing_metadata((("x-echo-trailer", "said"),))
    return b"hello " + request


def count(request, context):
    for i in range(int(request.decode())):
        yield str(i).encode()
    context.set_trailing_metadata((("x-echo-trailer", "counted"),))


def fail(request, context):
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")


handlers = {
    "Say": grpc.unary_unary_rpc_method_handler(say),
    "Count": grpc.unary_stream_rpc_method_handler(count),
    "Fail": grpc.unary_unary_rpc_method_handler(fail),
}
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print(port, flush=True)
server.wait_for_termination()
