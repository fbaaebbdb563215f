"""Development tools: the evaluation harness, the benchmark suite, the soak, and the fakes and
tiny models the tests share with them. Not part of the wheel or the image."""
