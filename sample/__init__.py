"""The bundled sample and its generators: never imported by the product's steps, only by the demo,
the tests and the benchmarks (sample/README.md says what each source is and where it came from)."""

from pathlib import Path

from records.finetune import EXAMPLES_FILE

# The bundled fine-tuning examples (CC0; the demo's and the fine-tuning asset's default input).
FINETUNE_EXAMPLES = Path(__file__).resolve().parent / "finetune" / EXAMPLES_FILE
