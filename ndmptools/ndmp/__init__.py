"""NDMP version 4: the wire codec, the message definitions, and the server behind `ndmptools serve`.

xdr.py and messages.py know bytes only; wire.py frames records on a socket;
server.py dispatches requests to the services (connect.py, info.py for
CONFIG, tape.py, mover.py, data.py) with one Session (session.py) per connection.
"""
