"""The transformers backends of the local worker.

``base`` owns what every one of them does the same way (placement, files, loading the
tokenizer and the weights, the loaded state); ``qwen3``, ``seqcls`` and ``biencoder`` say only
what differs. The rest are their parts: ``load`` and ``hub`` (model files), ``device``,
``quantize``, ``pooling``, ``chunking`` and ``plaintext`` (client text is tokenized as text:
a special token's string in a document never becomes the control token).
"""
