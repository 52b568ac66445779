"""The service's endpoints, one module per endpoint family; each is a thin layer over the
library and exposes its own ASGI ``app`` (one Lambda function each). ``functions.app`` serves
them all in one process."""
