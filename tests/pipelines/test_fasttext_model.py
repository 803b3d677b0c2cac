"""The fastText wrapper: trains and predicts under numpy 2, and caches models by content."""

import random
import shutil
from pathlib import Path

from pipelines.fasttext_model import FastTextModel, file_sha256, train_supervised

LID_MODEL = Path(__file__).resolve().parents[2] / "resources" / "models" / "lid.176.8f3472cf.ftz"

FRUIT = ["apple", "banana", "cherry", "grape", "melon", "peach", "plum", "mango"]
TOOLS = ["hammer", "wrench", "saw", "drill", "chisel", "pliers", "screwdriver", "spanner"]


def write_training_file(path: Path, seed: int = 0) -> Path:
    rng = random.Random(seed)
    lines = []
    for _ in range(300):
        label, words = rng.choice([("fruit", FRUIT), ("tool", TOOLS)])
        lines.append(f"__label__{label} " + " ".join(rng.choices(words, k=6)))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_train_and_predict_two_labels(tmp_path):
    model = train_supervised(write_training_file(tmp_path / "train.txt"), epoch=25, lr=0.5, thread=1, seed=0)
    assert sorted(model.labels) == ["fruit", "tool"]
    fruit, tool, both = model.predict(["apple mango\npeach plum", "drill saw hammer", "apple saw"], k=2)
    assert fruit[0][0] == "fruit" and fruit[0][1] > 0.9
    assert tool[0][0] == "tool" and tool[0][1] > 0.9
    # k=2 gives both labels with probabilities that sum to about one (the C++ binding, not multilinePredict).
    assert {label for label, _ in both} == {"fruit", "tool"}
    assert abs(sum(p for _, p in fruit) - 1.0) < 0.02
    model.save(tmp_path / "m.bin")
    again = FastTextModel.load(tmp_path / "m.bin")
    assert again.predict(["drill saw hammer"])[0][0][0] == "tool"


def test_lid_model_predicts_languages():
    model = FastTextModel.load(LID_MODEL)
    results = model.predict(
        [
            "Der Hund läuft schnell über die Straße und bellt laut.",
            "Кошка спит на диване весь день.",
            "今日は天気がとてもいいですね。",
        ],
        k=3,
    )
    assert [r[0][0] for r in results] == ["de", "ru", "ja"]
    assert all(len(r) == 3 and r[0][1] >= r[1][1] >= r[2][1] for r in results)


def test_cache_is_by_content_not_path(tmp_path):
    first = tmp_path / "first.bin"
    train_supervised(write_training_file(tmp_path / "a.txt", seed=1), epoch=5, thread=1, seed=0).save(first)
    copy = tmp_path / "copy.bin"
    shutil.copyfile(first, copy)
    assert FastTextModel.load(first) is FastTextModel.load(copy)  # same bytes, one model

    path = tmp_path / "model.bin"
    shutil.copyfile(first, path)
    old = FastTextModel.load(path)
    shutil.copyfile(LID_MODEL, path)  # replaced in place: must not reuse the old model
    new = FastTextModel.load(path)
    assert new is not old and new.sha256 == file_sha256(LID_MODEL)
    assert len(new.labels) == 176
