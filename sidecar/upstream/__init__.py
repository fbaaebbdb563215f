"""The one Elasticsearch client.

:mod:`.wire` decides what ES receives, :mod:`.client` owns the pool and both ways of sending
(streamed relay, buffered fetch), :mod:`.errors` maps client failures to the sidecar's.
"""

from sidecar.upstream.client import BufferedResponse, BufferFull, EsClient
from sidecar.upstream.wire import EsRequest

__all__ = ["BufferFull", "BufferedResponse", "EsClient", "EsRequest"]
