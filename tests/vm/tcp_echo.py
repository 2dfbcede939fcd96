#!/usr/bin/env python3
"""A loopback TCP echo workload for recordings: a server thread and a client that sends a message (1 KiB, or argv[1] bytes) and reads it back, forever."""

import socket
import sys
import threading
import time


def serve(listener: socket.socket) -> None:
    while True:
        connection, _ = listener.accept()
        with connection:
            while data := connection.recv(65536):
                connection.sendall(data)


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    threading.Thread(target=serve, args=(listener,), daemon=True).start()
    payload = b"x" * (int(sys.argv[1]) if len(sys.argv) > 1 else 1024)
    while True:
        with socket.create_connection(listener.getsockname()) as client:
            for _ in range(10):
                client.sendall(payload)
                received = 0
                while received < len(payload):
                    received += len(client.recv(65536))
        time.sleep(0.01)


if __name__ == "__main__":
    main()
