"""The bundled sample and its generators: never imported by the product's steps, only by the demo,
the tests and the benchmarks (sample/README.md says what each source is and where it came from)."""
