#!/usr/bin/env python3
"""Makes the tokenizer reference data in tests/data/tokenizer/.

Run once by a developer (never in CI; it needs `tokenizers` and `transformers`),
and the outputs are committed; tests/test_tokenizer.cpp then checks the C++
BpeTokenizer against them. Deterministic (fixed seeds) for the same library
versions:

    python3 scripts/make_tokenizer_refs.py [--out tests/data/tokenizer]
                                           [--gpt2 ../shared/data/gpt2-bpe]

What it writes (every .jsonl line is one JSON object):
  gpt2_encode.jsonl   {"text", "ids", "char_offsets"} for ~470 texts with the
                      GPT-2 vocabulary in --gpt2: English prose and code (from
                      the Python standard library's docs and sources), numbers,
                      whitespace runs, contractions, many scripts, emoji and ZWJ
                      sequences, combining marks, control characters, the special
                      token inside text, very long words, and random strings from
                      many Unicode categories. ids come from transformers'
                      GPT2TokenizerFast loaded from the directory (checked equal
                      to a plain `tokenizers` BPE + ByteLevel tokenizer); offsets
                      are HF's character offsets ([start, end) in code points).
  gpt2_decode.jsonl   {"ids", "skip_special_tokens", "text"}: HF's decode of id
                      sequences, many of them cutting multi-byte characters or
                      joining invalid bytes (U+FFFD replacement).
  custom/tokenizer.json, custom_encode.jsonl, custom_decode.jsonl
                      a small byte-level BPE trained here by `tokenizers` (the
                      full GPT-2 tokenizer.json would be 2 MB) with added tokens
                      that are special or not, normalized or not, lstrip/rstrip;
                      merges in the [left, right] format; ByteLevel post-processor.
  custom_prefix/tokenizer.json, custom_prefix_encode.jsonl
                      another one trained on ASCII text without the byte alphabet
                      (so HF drops bytes it lacks), with add_prefix_space,
                      ignore_merges, merges in the legacy "left right" format and
                      a TemplateProcessing post-processor that adds nothing.
                      "offsets_exact" is false where HF drops bytes (its offsets
                      then shift; ours stay true byte offsets).
"""
import argparse
import inspect
import json
import os
import random
import sys
import unicodedata

import tokenizers
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# ---------------------------------------------------------------------------
# Texts

HAND_WRITTEN = [
    "", " ", "  ", "\n", "\t", "a", "Hello world", "Hello, world!", " Hello world ", "hello   world",
    "Hello\nworld\n", "Hello\n\nworld", "Hello \n world", "a\tb", "a\t\tb", " \ta", "\t a", "a \t b", "x  \n  y",
    "line1\nline2\n\n\nline3\n", "trailing spaces   ", "   leading spaces", "\r\n", "a\r\nb\r\n\r\n",
    "\x0b\x0c", "mixed \u00a0nbsp\u00a0 and\u2009thin\u3000ideographic", "\u2028line\u2029para\u0085nel",
    "don't", "I'm", "they'll", "we've", "she'd", "it's", "you're", "DON'T", "I'M", "'s", "''s", " 's", "x's's",
    "'", "''", "' s", "'re'", "'ll've'd", "rock 'n' roll", "don\u2019t", "O'Neil's", "y'all'd've",
    "123", "1234567890", "3.14159", "1e10", "-42", "0x1F", "1,000,000", "2024-01-01T12:00:00Z", "v1.2.3",
    "\uff11\uff12\uff13", "x\u00b2 + y\u00b3", "\u216b \u2167", "\u0663\u0664\u0665", "\u0967\u0968", "\u00bd \u2153",
    "caf\u00e9 na\u00efve r\u00e9sum\u00e9 Z\u00fcrich \u00c5ngstr\u00f6m", "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
    "\u4f60\u597d\uff0c\u4e16\u754c\u3002\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8",
    "\uc548\ub155\ud558\uc138\uc694 \uc138\uacc4", "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645",
    "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd", "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e0a\u0e32\u0e27\u0e42\u0e25\u0e01", "\u0393\u03b5\u03b9\u03ac \u03c3\u03bf\u03c5 \u039a\u03cc\u03c3\u03bc\u03b5",
    "\U0001f44d\U0001f3fd \U0001f468\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466 \U0001f1fa\U0001f1f8 \u2764\ufe0f",
    "\U0001f600\U0001f603\U0001f604", "I \u2764 NY \U0001f5fd!", "e\u0301", "a\u0300\u0301\u0302\u0303", " \u0301x",
    "Z\u0351\u0352\u0353a\u0354\u0355l\u0356\u0357g\u0358o", "\x00", "\x00\x01\x1f\x7f", "a\x00b", "\x1b[31mred\x1b[0m",
    "x\u1c89y \U000105c0z \ua7cbq",  # letters new in Unicode 16 (Python 3.11's unicodedata is 14.0)
    "\u200b\u200c\u200d", "\ufeffBOM", "\ufffd", "\U0010ffff\U000f0000", "\ue000 private",
    "<|endoftext|>", "a<|endoftext|>b", "<|endoftext|><|endoftext|>", " <|endoftext|> ", "<|endoftext",
    "<|endoftext|", "<<|endoftext|>>", "<|endoftext|>\n\nNew document", "end.<|endoftext|>Start",
    "https://example.com/path?q=1&r=two#frag", "user@example.com", "C:\\Users\\name\\file.txt",
    "#include <stdio.h>\nint main() { return 0; }\n", "    def f(x):\n        return x ** 2\n",
    "SELECT * FROM t WHERE a = 'b';", "{\"key\": [1, 2, 3], \"x\": null}", "$$\\int_0^1 x^2 dx$$",
    "!!!???...", "---", "====", "______", "*** bold ***", "\u2014 em dash \u2013 en dash \u2026",
    "\u00ab\u00bb\u201c\u201d\u2018\u2019", "#hashtag @mention", "ALLCAPS lowercase MiXeD",
    "a" * 300, "ab" * 200, "1" * 300, " " * 300, "\n" * 200, " \n" * 100, "x" + " " * 50 + "y",
    "\U0001f600" * 50, "\u00e9" * 100, "\u65e5" * 100,
]


def prose_and_code():
    """English prose (module docs) and code (module sources) from the standard library."""
    import argparse as m1, collections as m2, json as m3, logging as m4, textwrap as m5, unittest as m6
    import functools as m7, itertools as m8, pathlib as m9, string as m10, difflib as m11, heapq as m12
    import email as m13, csv as m14, shlex as m15, calendar as m16
    mods = [m1, m2, m3, m4, m5, m6, m7, m8, m9, m10, m11, m12, m13, m14, m15, m16]
    prose, code = [], []
    for m in mods:
        doc = inspect.getdoc(m) or ""
        for member in vars(m).values():
            if callable(member) and getattr(member, "__module__", None) == m.__name__:
                d = inspect.getdoc(member)
                if d:
                    doc += "\n\n" + d
        prose.append(doc)
        try:
            code.append(inspect.getsource(m))
        except (OSError, TypeError):
            pass
    return prose, code


def paragraphs(docs, rng, count, max_len):
    paras = []
    for d in docs:
        paras += [p for p in d.split("\n\n") if len(p) > 40]
    rng.shuffle(paras)
    return [p[:max_len] for p in paras[:count]]


def code_chunks(sources, rng, count, lines):
    chunks = []
    for s in sources:
        ls = s.split("\n")
        for _ in range(3):
            i = rng.randrange(max(1, len(ls) - lines))
            chunks.append("\n".join(ls[i:i + rng.randint(3, lines)]))
    rng.shuffle(chunks)
    return chunks[:count]


WHITESPACE = ["\t", "\n", "\r", "\x0b", "\x0c", " ", " ", " ", "  ", "\x85", "\xa0", "\u1680", "\u2003", "\u2028",
              "\u2029", "\u202f", "\u205f", "\u3000", "\x1c", "\x1f"]
PIECES = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'", "'S", " '", "<|endoftext|>", "<|endo", "\u200d",
          "\ufe0f", "\u0301", "!", "?", ".", ",", "-", "_", "$", "\u20ac", "\U0001f600", "\U0001f468\u200d\U0001f469"]


def random_char(rng):
    """A code point from a random bucket: ASCII, scripts, marks, symbols, anything assigned or not."""
    bucket = rng.randrange(12)
    if bucket == 0:
        return chr(rng.randrange(0x20, 0x7F))
    if bucket == 1:
        return rng.choice(WHITESPACE)
    if bucket == 2:
        return rng.choice(PIECES)
    if bucket == 3:
        return chr(rng.randrange(0xA0, 0x250))  # Latin-1, Latin Extended
    if bucket == 4:
        return chr(rng.choice([rng.randrange(0x370, 0x530), rng.randrange(0x590, 0x700), rng.randrange(0x900, 0xE80)]))
    if bucket == 5:
        return chr(rng.randrange(0x300, 0x370))  # combining marks
    if bucket == 6:
        return chr(rng.choice([rng.randrange(0x4E00, 0x9FFF), rng.randrange(0x3040, 0x3100), rng.randrange(0xAC00, 0xD7A4)]))
    if bucket == 7:
        return chr(rng.choice([rng.randrange(0x1F300, 0x1FAFF), rng.randrange(0x2000, 0x2BFF)]))
    if bucket == 8:
        return chr(rng.randrange(0x30, 0x3A)) if rng.random() < 0.5 else chr(rng.choice(
            [0x660 + rng.randrange(10), 0x966 + rng.randrange(10), 0xFF10 + rng.randrange(10), 0x2160 + rng.randrange(16),
             0xB2, 0xB3, 0xB9, 0xBC, 0x1D7CE + rng.randrange(50), 0x10107 + rng.randrange(40)]))
    if bucket == 9:
        return chr(rng.randrange(0, 0x20))  # C0 controls
    while True:  # anything but surrogates: astral planes, private use, unassigned
        cp = rng.randrange(0, 0x110000) if bucket == 10 else rng.randrange(0x10000, 0x30000)
        if not 0xD800 <= cp <= 0xDFFF:
            return chr(cp)


def random_texts(rng, count):
    out = []
    for i in range(count):
        n = rng.randint(1, 12 if i % 3 else 60)
        out.append("".join(random_char(rng) for _ in range(n)))
    return out


def unicode_category_texts(rng):
    """One text per general category: runs of its characters with separators."""
    by_cat = {}
    for cp in range(0x110000):
        if 0xD800 <= cp <= 0xDFFF:
            continue
        by_cat.setdefault(unicodedata.category(chr(cp)), []).append(cp)
    out = []
    for cat in sorted(by_cat):
        cps = by_cat[cat]
        s = ""
        for _ in range(8):
            s += "".join(chr(rng.choice(cps)) for _ in range(rng.randint(1, 4))) + rng.choice(["", " ", "a", "1", "!"])
        out.append(s)
    return out


def gpt2_texts(rng):
    prose, code = prose_and_code()
    texts = list(HAND_WRITTEN)
    texts += paragraphs(prose, rng, 100, 800)
    texts += code_chunks(code, rng, 40, 30)
    texts += unicode_category_texts(rng)
    texts += random_texts(rng, 170)
    # Long texts: prose, code, and a mix with every kind of character.
    texts.append("\n\n".join(paragraphs(prose, random.Random(7), 400, 100000))[:12000])
    texts.append("\n".join(code)[:8000])
    texts.append("".join(random_char(rng) for _ in range(3000)))
    return texts


# ---------------------------------------------------------------------------
# References

def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {b: chr(c) for b, c in zip(bs, cs)}


def encode_records(tok, offsets_tok, texts, exact=None):
    recs = []
    for t in texts:
        e = tok.encode(t, add_special_tokens=False)
        o = offsets_tok.encode(t, add_special_tokens=False)
        assert e.ids == o.ids, t
        rec = {"text": t, "ids": e.ids, "char_offsets": [list(x) for x in o.offsets]}
        if exact is not None:
            rec["offsets_exact"] = exact(t)
        recs.append(rec)
    return recs


def decode_records(tok, rng, texts, special_ids, count):
    """Id sequences: random ids, slices of encodings (cutting characters), invalid byte runs."""
    byte_char = bytes_to_unicode()
    vocab = tok.get_vocab()
    byte_ids = [vocab[byte_char[b]] for b in range(256) if byte_char[b] in vocab]
    vocab_size = tok.get_vocab_size()
    multibyte = [t for t in texts if len(t.encode()) > len(t) and t]
    recs = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            ids = [rng.randrange(vocab_size) for _ in range(rng.randint(1, 20))]
        elif kind == 1:
            full = tok.encode(rng.choice(multibyte), add_special_tokens=False).ids
            a = rng.randrange(len(full))
            ids = full[a:a + rng.randint(1, 12)]
        elif kind == 2:
            ids = [rng.choice(byte_ids) for _ in range(rng.randint(1, 10))]
        else:
            full = tok.encode(rng.choice(multibyte), add_special_tokens=False).ids
            ids = full[: rng.randint(0, len(full))] + [rng.choice(special_ids)] + full[rng.randint(0, len(full)):]
        skip = rng.random() < 0.5
        recs.append({"ids": ids, "skip_special_tokens": skip, "text": tok.decode(ids, skip_special_tokens=skip)})
    # Every byte alone, and the classic invalid sequences.
    invalid = [b"\x80", b"\xbf", b"\xc0\xaf", b"\xc1\x81", b"\xe0\x80\xaf", b"\xed\xa0\x80", b"\xf0\x8f\xbf\xbf",
               b"\xf4\x90\x80\x80", b"\xf5", b"\xff", b"\xe6\x97", b"\xe6\x97a", b"\xf0\x9f\x98", b"\xf0\x9f\x98\x80\x80",
               b"a\xc3", b"\xc3\xa9\xa9", b"\xe2\x82\xac\xe2\x82"]
    for seq in invalid + [bytes([b]) for b in range(256)]:
        ids = [vocab[byte_char[b]] for b in seq if byte_char[b] in vocab]
        recs.append({"ids": ids, "skip_special_tokens": False, "text": tok.decode(ids, skip_special_tokens=False)})
    return recs


def write_jsonl(path, recs):
    with open(path, "w", encoding="utf-8") as f:
        for r in recs:
            f.write(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n")
    print(f"wrote {path}: {len(recs)} records, {os.path.getsize(path)} bytes")


def gpt2_references(gpt2_dir, out, rng):
    from transformers import GPT2TokenizerFast
    hf = GPT2TokenizerFast.from_pretrained(gpt2_dir)._tokenizer
    plain = Tokenizer(models.BPE.from_file(os.path.join(gpt2_dir, "vocab.json"), os.path.join(gpt2_dir, "merges.txt")))
    plain.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    plain.decoder = decoders.ByteLevel()
    plain.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    texts = gpt2_texts(rng)
    for t in texts:
        assert hf.encode(t, add_special_tokens=False).ids == plain.encode(t).ids, t
    write_jsonl(os.path.join(out, "gpt2_encode.jsonl"), encode_records(hf, hf, texts))
    write_jsonl(os.path.join(out, "gpt2_decode.jsonl"), decode_records(hf, rng, texts, [50256], 120))
    return texts


def train_bpe(texts, vocab_size, full_alphabet, special):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if full_alphabet else [])
    tok.train_from_iterator(texts, trainer)
    return tok


CUSTOM_TEXTS = [
    "<mask>", "a<mask>b", "  <mask>  x", "x <mask> y", "<mask2><mask>", "<mask2", "<mask", "hello world",
    "say hello world!", "hello  world", "Hello world", "\u65e5\u672c\u8a9e\u3067\u3059", "x[RS]   y", "[RS]\n\nz",
    "  lstripped", "a lstripped b", "\tlstripped\t", "abcd abc abcde", "<|pad|><|endoftext|>", "<|endoftext|> hello world<mask>",
    "   ", "\u3000<mask>\u3000", "don't <mask>'s",
]


def custom_references(out, rng, prose, texts):
    # A: full byte alphabet, added tokens of every kind, ByteLevel post-processor.
    tok = train_bpe(prose, 800, True, ["<|endoftext|>", "<|pad|>"])
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, rstrip=False, special=True, normalized=False),
                            AddedToken("<mask2>", special=True, normalized=False)])
    tok.add_tokens([AddedToken("hello world", normalized=True), AddedToken("\u65e5\u672c\u8a9e", normalized=False),
                    AddedToken("[RS]", rstrip=True, normalized=False), AddedToken("lstripped", lstrip=True, normalized=True),
                    AddedToken("abcd", normalized=False), AddedToken("abc", normalized=True)])
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    d = os.path.join(out, "custom")
    os.makedirs(d, exist_ok=True)
    tok.save(os.path.join(d, "tokenizer.json"))
    untrimmed = Tokenizer.from_str(tok.to_str())
    untrimmed.post_processor = None
    sample = CUSTOM_TEXTS + [t for t in texts if len(t) < 600][::3]
    write_jsonl(os.path.join(out, "custom_encode.jsonl"), encode_records(tok, untrimmed, sample))
    specials = [tok.token_to_id(t) for t in ("<|endoftext|>", "<|pad|>", "<mask>", "<mask2>", "hello world", "\u65e5\u672c\u8a9e")]
    write_jsonl(os.path.join(out, "custom_decode.jsonl"), decode_records(tok, rng, texts, specials, 80))

    # B: ASCII-only training text, no byte alphabet; add_prefix_space, ignore_merges,
    # legacy merges, a TemplateProcessing that adds nothing.
    ascii_prose = [p.encode("ascii", "ignore").decode() for p in prose]
    tok = train_bpe(ascii_prose, 600, False, ["<|endoftext|>"])
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    tok.post_processor = processors.TemplateProcessing(single="$A", pair="$A $B", special_tokens=[])
    spec = json.loads(tok.to_str())
    spec["model"]["ignore_merges"] = True
    spec["model"]["merges"] = [" ".join(m) for m in spec["model"]["merges"]]
    tok = Tokenizer.from_str(json.dumps(spec))
    d = os.path.join(out, "custom_prefix")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump(spec, f, ensure_ascii=False, indent=1)
    assert Tokenizer.from_file(os.path.join(d, "tokenizer.json")).to_str() == tok.to_str()
    byte_char = bytes_to_unicode()
    vocab = tok.get_vocab()
    exact = lambda t: all(byte_char[b] in vocab for b in t.encode())
    write_jsonl(os.path.join(out, "custom_prefix_encode.jsonl"), encode_records(tok, tok, sample, exact))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=os.path.join(ROOT, "tests", "data", "tokenizer"))
    ap.add_argument("--gpt2", default=os.path.join(ROOT, "..", "shared", "data", "gpt2-bpe"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    print(f"tokenizers {tokenizers.__version__}")
    rng = random.Random(20240601)
    texts = gpt2_references(args.gpt2, args.out, rng)
    prose, _ = prose_and_code()
    custom_references(args.out, rng, prose, texts)


if __name__ == "__main__":
    main()
