"""Where the sentences of a synthetic corpus come from; every source gives normalised ``text.Sentence`` objects.

| source | what | licence |
| --- | --- | --- |
| an4 | AN4-like census sentences from a grammar (``an4_grammar``): numbers, dates, spelled words | this project |
| lm | English written by SmolLM2-135M-Instruct (GGUF), seeded sampling, cached in a text file | model Apache-2.0 |
| web | the World English Bible, Debian ``sword-text-web`` (SWORD zText module) | public domain |
| wordnet | the example sentences of WordNet 3.0 glosses, Debian ``wordnet-base`` | WordNet 3.0 licence (BSD-like) |

Pool sources (lm, web, wordnet) are read whole, normalised (``text.normalize``), de-duplicated and counted: how
many raw sentences were dropped and why.
"""
from __future__ import annotations

import collections
import hashlib
import os
import random
import re
import struct
import sys
import time
import zlib
from pathlib import Path
from typing import Counter, Dict, Iterable, List, Tuple

from speechllm.synth import an4_grammar
from speechllm.synth.text import Sentence, normalize, spelled_letters_spoken

WEB_DIR = "/usr/share/sword/modules/texts/ztext/engWEB2015eb"
WORDNET_DIR = "/usr/share/wordnet"
LM_MODEL = "/work/shared/models/smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"
POOL_WORDS = (4, 25)  # words per sentence kept from the pool sources: about 1.5 to 10 s of speech


class SourceUnavailable(RuntimeError):
    """The source's data is absent; the message says how to get it."""


def an4_sentence(rng: random.Random) -> Sentence:
    text = an4_grammar.random_sentence(rng)
    return Sentence(text, spelled_letters_spoken(text))


def normalise_all(raw: Iterable[str], min_words=POOL_WORDS[0], max_words=POOL_WORDS[1]
                  ) -> Tuple[List[Sentence], Counter]:
    """Normalised, de-duplicated sentences in first-seen order, and a count of what was dropped and why."""
    kept, seen, dropped = [], set(), collections.Counter()
    for sentence in raw:
        normal, why = normalize(sentence, min_words, max_words)
        if normal is None:
            dropped[why] += 1
        elif normal.text in seen:
            dropped["a repeat of an earlier sentence"] += 1
        else:
            seen.add(normal.text)
            kept.append(normal)
    return kept, dropped


# ------------------------------------------------------------------------------------------------ sentences

RE_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(]?[A-Z0-9])")


def split_sentences(paragraph: str) -> List[str]:
    """Splits at . ! ? followed by a capital; clauses over POOL_WORDS are split again at ; and :."""
    out = []
    for sentence in RE_SENTENCE_END.split(" ".join(paragraph.split())):
        if len(sentence.split()) > POOL_WORDS[1]:
            out += [part.strip() for part in re.split(r"[;:]\s+", sentence) if part.strip()]
        else:
            out.append(sentence.strip())
    return [s for s in out if s]


# ------------------------------------------------------------------------------------------------ web

def read_sword_ztext(folder: str) -> List[str]:
    """The text of a SWORD zText module (OSIS markup): notes and titles removed, tags stripped, per block."""
    folder = Path(folder)
    texts = []
    for testament in ("ot", "nt"):
        index, data = folder / f"{testament}.bzs", folder / f"{testament}.bzz"
        if not index.is_file():
            continue
        raw = index.read_bytes()
        blob = data.read_bytes()
        for i in range(0, len(raw), 12):
            offset, size, _ = struct.unpack("<III", raw[i:i + 12])
            texts.append(zlib.decompress(blob[offset:offset + size]).decode("utf-8"))
    return texts


def web_sentences(folder: str = WEB_DIR) -> List[str]:
    if not Path(folder, "nt.bzs").is_file():
        raise SourceUnavailable(f"the World English Bible is not at {folder}: apt-get install -y sword-text-web "
                                f"(or tools/install.sh --tts)")
    sentences = []
    for block in read_sword_ztext(folder):
        block = re.sub(r"<note\b.*?</note>|<title\b.*?</title>", " ", block, flags=re.S)
        block = re.sub(r"<[^>]+>", " ", block)
        block = block.replace("\u2014", ", ")
        for paragraph in block.split("\n"):
            sentences += split_sentences(paragraph)
    return sentences


# ------------------------------------------------------------------------------------------------ wordnet

def wordnet_sentences(folder: str = WORDNET_DIR) -> List[str]:
    """The quoted examples of the glosses of data.{noun,verb,adj,adv}, in file order."""
    files = [Path(folder, f"data.{pos}") for pos in ("noun", "verb", "adj", "adv")]
    if not all(f.is_file() for f in files):
        raise SourceUnavailable(f"WordNet is not at {folder}: apt-get install -y wordnet-base "
                                f"(or tools/install.sh --tts)")
    examples = []
    for path in files:
        for line in path.read_text(encoding="latin-1").splitlines():
            if line.startswith("  ") or " | " not in line:
                continue
            for example in re.findall(r'"([^"]+)"', line.split(" | ", 1)[1]):
                if "`" not in example and "'" != example[:1]:
                    examples.append(example[0].upper() + example[1:])
    return examples


# ------------------------------------------------------------------------------------------------ lm

LM_TOPICS = (
    "cooking dinner", "the weather", "a trip to the beach", "learning to drive", "a football match", "office work",
    "gardening", "a visit to the doctor", "buying a new phone", "a rainy morning", "space travel",
    "a birthday party", "ancient rome", "fixing a bicycle", "a job interview", "the ocean", "a train journey",
    "a family dinner", "school homework", "a new neighbour", "the city at night", "a mountain hike", "coffee",
    "a lost wallet", "a power cut", "the library", "a music lesson", "a wedding", "winter holidays", "a hospital",
    "a small business", "the stock market", "an election", "a science experiment", "a museum visit",
    "a camping trip", "online shopping", "a flight delay", "a car accident", "a restaurant review",
    "a basketball game", "a history lesson", "a farm", "a kitten", "a dog walk", "the internet", "a news report",
    "a thunderstorm", "a garden party", "a bank account", "a train station", "a post office", "a software bug",
    "a new computer", "a hotel stay", "the moon", "a volcano", "a forest fire", "a river", "a fishing trip",
    "a cooking recipe", "a bakery", "a supermarket", "a bus ride", "a city map", "a phone call", "an email",
    "a holiday in spain", "learning french", "a chess game", "a marathon", "a swimming pool", "a dentist",
    "a haircut", "a clothes shop", "a rainy weekend", "a snowy day", "a summer evening", "the sunrise",
    "a broken window", "a noisy neighbour", "a quiet village", "a big city", "a factory", "a newspaper",
    "a television show", "a movie night", "a theatre play", "a concert", "a guitar", "a piano", "a painting",
    "a photograph", "a birthday present", "a long letter", "a school trip", "a university lecture",
    "a science fair", "a robot", "an airport", "a ship", "a lighthouse", "an island", "a desert", "a jungle",
    "the arctic", "a zoo", "a horse", "a bird", "bees", "a spider", "the planets", "climate change",
    "recycling", "healthy food", "sleep", "exercise", "a cold", "a headache", "a pharmacy", "a recipe for soup",
    "a breakfast", "a picnic", "a market", "a price rise", "a salary", "a tax form", "a meeting",
    "a deadline", "a team project", "a speech", "a debate", "a courtroom", "a police officer", "a firefighter",
    "a nurse", "a teacher", "a farmer", "a pilot", "a chef", "an engineer", "a shopkeeper", "a taxi driver",
)
LM_STYLES = (
    "Write a short paragraph about {topic}.",
    "Write a few simple sentences about {topic}.",
    "Tell a very short story about {topic}.",
    "Write a short conversation between two friends about {topic}.",
    "Give some practical advice about {topic}.",
    "Write a short news report about {topic}.",
    "Ask three questions about {topic}.",
    "Describe {topic} to a child in a few sentences.",
)
LM_BATCH = 32  # prompts generated together
LM_MAX_NEW_TOKENS = 96
LM_VERSION = 1  # bump when prompts or sampling change: old caches are then refused
META_WORDS = re.compile(r"\b(sentences?|paragraph|here are|here is|as an ai|i hope|let me know)\b", re.I)
LABEL = re.compile(r"^\s*(?:[-*\u2022]+|\d+[.)]|[A-Z][A-Za-z]*(?: \d)?:|\*\*[^*]+\*\*:?)\s*")


def lm_prompts(seed: int, batch: int) -> List[str]:
    rng = random.Random(f"lm:{seed}:{batch}")
    return [rng.choice(LM_STYLES).format(topic=rng.choice(LM_TOPICS)) for _ in range(LM_BATCH)]


def lm_output_sentences(output: str) -> List[str]:
    """Sentences of one generated answer: list markers and speaker labels removed, meta talk dropped."""
    out = []
    for line in output.splitlines():
        previous = None
        while previous != line:  # "2. **Friend 1:** ..." has two labels
            previous, line = line, LABEL.sub("", line, count=1).strip().strip('"')
        if not line or line.endswith(":"):
            continue
        for sentence in split_sentences(line):
            if sentence[-1:] in ".!?" and not META_WORDS.search(sentence):
                out.append(sentence)
    return out


_LM = {}


def _lm_worker_init(model_path: str):
    import torch

    from speechllm.models.llm import load_causal_lm, load_tokenizer

    torch.set_num_threads(1)
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side = "left"
    model = load_causal_lm(model_path, finetune="frozen")
    model.eval()
    _LM["tokenizer"], _LM["model"] = tokenizer, model


def _lm_generate_batch(job) -> Tuple[int, List[str]]:
    import torch

    seed, batch = job
    tokenizer, model = _LM["tokenizer"], _LM["model"]
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": p}], tokenize=False,
                                             add_generation_prompt=True) for p in lm_prompts(seed, batch)]
    encoded = tokenizer(prompts, return_tensors="pt", padding=True)
    torch.manual_seed(int(hashlib.sha256(f"lm:{seed}:{batch}".encode()).hexdigest()[:8], 16))
    with torch.no_grad():
        generated = model.generate(**encoded, do_sample=True, temperature=0.9, top_p=0.95,
                                   max_new_tokens=LM_MAX_NEW_TOKENS, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(generated[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
    return batch, [s for answer in answers for s in lm_output_sentences(answer)]


class LMSentenceCache:
    """Generated sentences in a text file, one batch after another: batch k depends only on the seed and k,
    so a larger request extends the file and an interrupted run resumes where it stopped."""

    def __init__(self, path: str, model_path: str, seed: int):
        self.path, self.model_path, self.seed = Path(path), model_path, seed
        self.header = f"# lm sentences v{LM_VERSION} seed {seed} model {Path(model_path).name}"

    def read(self) -> Dict[int, List[str]]:
        if not self.path.exists():
            return {}
        lines = self.path.read_text(encoding="utf-8").splitlines()
        if not lines or lines[0] != self.header:
            raise RuntimeError(f"{self.path} holds sentences of another model, seed or version "
                               f"({lines[0] if lines else 'empty'!r}, wanted {self.header!r}): delete it")
        batches, current = {}, None
        for line in lines[1:]:
            if line.startswith("## batch "):
                current = int(line.split()[2])
                batches[current] = []
            elif current is not None:
                batches[current].append(line)
        return batches

    def append(self, batch: int, sentences: List[str]):
        new_file = not self.path.exists()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as out:
            if new_file:
                out.write(self.header + "\n")
            out.write(f"## batch {batch}\n" + "".join(s.replace("\n", " ") + "\n" for s in sentences))

    def sentences(self, wanted: int, nj: int = 1, log=print) -> Tuple[List[Sentence], Counter, float]:
        """At least `wanted` normalised distinct sentences when the model can give them (generating the batches
        the cache lacks); returns them, the drop counts and the seconds spent generating."""
        batches = self.read()
        start = time.time()
        kept, dropped = normalise_all(s for b in sorted(batches) for s in batches[b])
        if len(kept) >= wanted:
            return kept, dropped, 0.0
        if not Path(self.model_path).is_file():
            raise SourceUnavailable(f"the LM sentence source needs the model {self.model_path} (--lm_model)")
        import multiprocessing

        context = multiprocessing.get_context("fork")
        next_batch = max(batches, default=-1) + 1
        log(f"lm: {len(kept)} sentences cached in {self.path}, {wanted} wanted: generating with "
            f"{Path(self.model_path).name} in {nj} process(es)")
        with context.Pool(nj, initializer=_lm_worker_init, initargs=(self.model_path,)) as pool:
            while len(kept) < wanted:
                # Enough batches for the rest at the yield so far (at least one per process).
                per_batch = max(1.0, len(kept) / max(1, len(batches)))
                count = max(nj, min(64, int((wanted - len(kept)) / per_batch * 1.1) + 1))
                jobs = [(self.seed, b) for b in range(next_batch, next_batch + count)]
                for batch, sentences in pool.imap(_lm_generate_batch, jobs):
                    self.append(batch, sentences)
                    batches[batch] = sentences
                next_batch += count
                kept, dropped = normalise_all(s for b in sorted(batches) for s in batches[b])
                log(f"lm: {len(batches)} batches, {len(kept)} usable sentences, {time.time() - start:.0f} s")
        return kept, dropped, time.time() - start


def report_drops(name: str, raw_count: int, kept: int, dropped: Counter, out=sys.stdout):
    reasons = ", ".join(f"{n} {why}" for why, n in dropped.most_common()) or "none"
    print(f"text source {name}: {raw_count} raw sentences, {kept} kept, dropped: {reasons}", file=out)


def cache_path(cache_dir: str, seed: int) -> str:
    return os.path.join(cache_dir, f"lm_sentences_seed{seed}.txt")
