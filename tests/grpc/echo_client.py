"""A gRPC client for tests/grpc.rs: calls echo.Echo (see echo_server.py) at TARGET and prints what
it got as one JSON object: each call's reply, status code and trailing metadata.

Cleartext HTTP/2 with prior knowledge by default; with --ca (and --server-name) over TLS, for an
entrypoint that terminates TLS.
"""
import argparse
import json

import grpc

parser = argparse.ArgumentParser()
parser.add_argument("target")
parser.add_argument("--ca", help="PEM file of the CA that signed the entrypoint's certificate")
parser.add_argument("--server-name", help="the name to expect in the entrypoint's certificate")
args = parser.parse_args()

options = [("grpc.enable_http_proxy", 0)]
if args.ca:
    with open(args.ca, "rb") as ca:
        credentials = grpc.ssl_channel_credentials(root_certificates=ca.read())
    if args.server_name:
        options.append(("grpc.ssl_target_name_override", args.server_name))
    channel = grpc.secure_channel(args.target, credentials, options=options)
else:
    channel = grpc.insecure_channel(args.target, options=options)

out = {}
reply, call = channel.unary_unary("/echo.Echo/Say").with_call(b"drover", timeout=20)
out["say"] = {"reply": reply.decode(), "code": call.code().name, "trailers": dict(call.trailing_metadata())}

stream = channel.unary_stream("/echo.Echo/Count")(b"3", timeout=20)
items = [message.decode() for message in stream]
out["count"] = {"items": items, "code": stream.code().name, "trailers": dict(stream.trailing_metadata())}

try:
    channel.unary_unary("/echo.Echo/Fail")(b"", timeout=20)
    out["fail"] = {"code": "OK"}
except grpc.RpcError as error:
    out["fail"] = {"code": error.code().name, "details": error.details()}

print(json.dumps(out))
