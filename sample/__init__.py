"""The bundled sample and its generators: never imported by the product's steps, only by the demo,
the tests and the benchmarks (sample/README.md says what each source is and where it came from)."""

from pathlib import Path

# The bundled fine-tuning examples: the finetuned_model asset's default and the demo's.
SAMPLE_EXAMPLES = Path(__file__).resolve().parent / "finetune" / "examples.jsonl"
