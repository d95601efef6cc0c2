"""The local sandbox fleet: network-namespace nodes with their own sshd, a demo app,
HAProxy in front and Prometheus watching. Users try lrelease on it; every test uses it."""
