"""Golden token ids of transformers' slow CLIPTokenizer (the one LaVie's pipelines call) for ~35 prompts,
under both padding conventions of the published checkpoints:

- eos_pad: stable-diffusion-v1-4/tokenizer (pad token "<|endoftext|>", id 49407), base and interpolation;
- bang_pad: stable-diffusion-x4-upscaler/tokenizer (SD2 style: special_tokens_map.json says pad "!", id 0,
  overriding tokenizer_config.json), the VSR stage.

The vocabulary is built from the bundled CLIP BPE file (models/tokenizer/data) in CLIP's layout, as
models/tokenizer/clip_vocab.ts does. Every prompt is tokenized as the pipelines do it:
padding="max_length", max_length=77, truncation=True. LaVie's environment has no ftfy, so neither may this
one: transformers then cleans text with its BasicTokenizer, and that is the behaviour recorded here.
"""

import gzip
import importlib.util
import json
import pathlib
import tempfile

import transformers
from transformers import CLIPTokenizer
from transformers.models.clip.tokenization_clip import bytes_to_unicode

ROOT = pathlib.Path(__file__).resolve().parents[3]
BPE_FILE = ROOT / "models" / "tokenizer" / "data" / "bpe_simple_vocab_16e6.txt.gz"
MAX_LENGTH = 77
N_MERGES = 49152 - 256 - 2


def _added(content: str) -> dict:
    return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}


def _config(pad_token: str) -> dict:
    return {
        "add_prefix_space": False,
        "bos_token": {"__type": "AddedToken", **_added("<|startoftext|>")},
        "do_lower_case": True,
        "eos_token": {"__type": "AddedToken", **_added("<|endoftext|>")},
        "errors": "replace",
        "model_max_length": MAX_LENGTH,
        "pad_token": pad_token,
        "tokenizer_class": "CLIPTokenizer",
        "unk_token": {"__type": "AddedToken", **_added("<|endoftext|>")},
    }


def _special_map(pad_token: str) -> dict:
    return {
        "bos_token": _added("<|startoftext|>"),
        "eos_token": _added("<|endoftext|>"),
        "pad_token": pad_token,
        "unk_token": _added("<|endoftext|>"),
    }


# The two folder layouts. For bang_pad the config's "<|endoftext|>" loses to the map's "!".
CONVENTIONS = {
    "eos_pad": {"special_tokens_map": _special_map("<|endoftext|>"), "tokenizer_config": _config("<|endoftext|>")},
    "bang_pad": {"special_tokens_map": _special_map("!"), "tokenizer_config": _config("<|endoftext|>")},
}

LONG = (
    "a majestic waterfall in a lush green forest, sunlight filtering through the trees, mist rising, "
    "birds flying, a rainbow over the water, rocks covered in moss, a small wooden bridge, a deer "
    "drinking from the river, butterflies, flowers in every colour, cinematic, ultra detailed, 8k, "
    "photorealistic, golden hour, wide angle, slow camera pan from left to right, peaceful atmosphere"
)

PROMPTS = [
    "a photo of a cat",
    "",
    "A Teddy Bear playing the GUITAR in Times Square, highly detailed",
    "an astronaut   riding\ta horse\n on the moon",
    "   leading and trailing spaces   ",
    "don't stop, it's the dog's toy; we'll see, you're right, I'm sure",
    "wow!!! amazing?! yes... (really) [maybe] {ok}",
    "hello!world! !",
    "!",
    "3.14159 and 2024-01-01 at 12:30pm, 1,000,000 people, 42nd street",
    "x^2 + y_1 = z | a/b \\ c * d & e % f # g @ h ~ i ` j $ k < l > m",
    "#hashtag @mention http://example.com/path?q=1&r=2 one-two_three.four:five",
    "café crème brûlée, naïve façade, Ångström, São Paulo, Zürich",
    "İstanbul, ΣΟΦΟΣ σοφός, straße, ǅemal",
    "\u201csmart quotes\u201d and \u2018single\u2019 \u00abguillemets\u00bb \u2014 dashes \u2013 and \u2026",
    "ＦＵＬＬＷＩＤＴＨ ｌｅｔｔｅｒｓ １２３！",
    "superscripts x² ½ ① and roman Ⅻ",
    "日本語のテキスト 中文字符 한국어 문장",
    "compatibility ideograph \uf900 and extension B \U00020000 character",
    "Ελληνικά και Русский текст, עִבְרִית, العربية",
    "हिन्दी में लिखा गया वाक्य",
    "emoji 🔥🔥 ❤️ 👨\u200d👩\u200d👧 🏳️\u200d🌈 👍🏽 🐱!",
    "tabs\tand\r\nwindows line endings\u00a0nbsp\u2003em space\u3000ideographic space",
    "zero\u200bwidth\u200djoiner soft\u00adhyphen \ufeffbom",
    "control\x00chars\x07here\x1b and replacement \ufffd char",
    "<|startoftext|>hello<|endoftext|> world <|ENDOFTEXT|> again",
    "a cat, cinematic lighting, 4k, 8k uhd, trending on artstation, masterpiece",
    "a panda taking a selfie, 2k, high quality",
    "The quick brown fox jumps over the lazy dog",
    " ".join(["a"] * 75),
    " ".join(["a"] * 76),
    LONG,
    "🐱" * 60,
    "supercalifragilisticexpialidocious antidisestablishmentarianism pneumonoultramicroscopic",
    "ÀÉÎÕÜ àéîõü ÇÑ çñ",
]


def build_vocab(tmp: pathlib.Path) -> None:
    """vocab.json + merges.txt in CLIP's layout from the BPE file."""
    lines = gzip.open(BPE_FILE).read().decode("utf-8").split("\n")
    merges = lines[1 : N_MERGES + 1]
    symbols = list(bytes_to_unicode().values())
    vocab = symbols + [s + "</w>" for s in symbols] + ["".join(m.split(" ")) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    assert len(set(vocab)) == 49408, len(set(vocab))
    ids = dict(zip(vocab, range(len(vocab))))
    (tmp / "vocab.json").write_text(json.dumps(ids, ensure_ascii=False), encoding="utf-8")
    (tmp / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")


def generate(out_dir: pathlib.Path) -> None:
    if importlib.util.find_spec("ftfy") is not None:
        raise SystemExit("ftfy is installed: CLIPTokenizer would use it, LaVie's environment does not have it")
    result = {
        "generator": "python/lavie_ref/golden/tokenizer.py",
        "transformers": transformers.__version__,
        "ftfy": False,
        "bpe_file": str(BPE_FILE.relative_to(ROOT)),
        "max_length": MAX_LENGTH,
        "conventions": {},
        "cases": [],
    }
    tokenizers = {}
    with tempfile.TemporaryDirectory() as d:
        base = pathlib.Path(d)
        build_vocab(base)
        for name, files in CONVENTIONS.items():
            folder = base / name
            folder.mkdir()
            for f in ("vocab.json", "merges.txt"):
                (folder / f).write_bytes((base / f).read_bytes())
            for key, content in files.items():
                (folder / f"{key}.json").write_text(json.dumps(content, indent=2))
            tok = CLIPTokenizer.from_pretrained(str(folder))
            assert len(tok) == 49408 and tok.model_max_length == MAX_LENGTH
            tokenizers[name] = tok
            result["conventions"][name] = {**files, "pad_token": tok.pad_token, "pad_id": tok.pad_token_id}
    for prompt in PROMPTS:
        case = {"prompt": prompt, "text_tokens": {}, "ids": {}}
        for name, tok in tokenizers.items():
            ids = tok(prompt, padding="max_length", max_length=MAX_LENGTH, truncation=True).input_ids
            assert len(ids) == MAX_LENGTH
            case["ids"][name] = ids
            case["text_tokens"][name] = len(tok(prompt, add_special_tokens=False).input_ids)
        result["cases"].append(case)
    head = {k: v for k, v in result.items() if k != "cases"}
    text = json.dumps(head, indent=2, ensure_ascii=False)[:-2]
    cases = ",\n".join("    " + json.dumps(c, ensure_ascii=False) for c in result["cases"])
    (out_dir / "clip_tokenizer.json").write_text(f'{text},\n  "cases": [\n{cases}\n  ]\n}}\n', encoding="utf-8")
    print(f"golden tokenizer: {len(PROMPTS)} prompts x {len(CONVENTIONS)} conventions")
