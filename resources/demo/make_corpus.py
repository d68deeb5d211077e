#!/usr/bin/env python3
"""Synthetic chat corpus for the bundled demo model (development tool, not shipped with the app).

Every example is a small task whose answer can be checked exactly and where a written-out
step-by-step trace helps a tiny model: multi-digit addition and subtraction with carries/borrows,
multiplication by one digit, comparing two numbers, sorting a short list, counting a letter in a
word, and short word problems that mix words and numbers.

Each example can be rendered in several chat forms (see `to_chat`):
  think        enable_thinking left undefined; the assistant writes <think>\\n{trace}\\n</think>\\n\\n{answer}
  nothink      enable_thinking=False; the prompt already ends in the empty think block, the
               assistant writes only the answer
  soft_think   " /think" in the user message; the assistant thinks
  soft_nothink " /no_think" in the user message; the assistant writes the empty think block itself
  multi        two user turns with switches; the most recent switch decides
Every final answer reads "The answer is X." so a checker can take X (see `extract_answer`).

The generator is deterministic for a given seed. Held-out test sets (one JSONL per task, records
{"task", "prompt", "answer"}) are written to data/; `train_stream` skips any problem whose
canonical key appears in a test set, so train and test never share a problem.

Usage:
  python3 make_corpus.py                      # test sets only (committed, ~200 per task)
  python3 make_corpus.py --train 20000        # also data/train.jsonl (not committed)
"""
import argparse
import json
import os
import random
import re

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, "data")

TASKS = ["add", "sub", "mul", "compare", "sort", "count", "word"]
TEST_SEED = 20240601
TEST_PER_TASK = 200

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
EMPTY_THINK = "<think>\n\n</think>\n\n"

PLACES = ["ones", "tens", "hundreds", "thousands", "ten-thousands", "hundred-thousands"]

# --------------------------------------------------------------------------- vocabulary

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Ines", "Jack", "Kira",
         "Leo", "Maya", "Nils", "Olga", "Pablo", "Rosa", "Sam", "Tara", "Umar", "Vera", "Will",
         "Yuki", "Zoe"]
PRONOUN = {n: ("She" if n in {"Anna", "Carla", "Emma", "Grace", "Ines", "Kira", "Maya", "Olga",
                              "Rosa", "Tara", "Vera", "Yuki", "Zoe"} else "He") for n in NAMES}
ITEMS = ["apples", "books", "coins", "stamps", "marbles", "pencils", "cards", "stickers", "shells",
         "eggs", "buttons", "beads", "cookies", "flowers", "tickets", "stones"]
CONTAINERS = ["boxes", "bags", "jars", "baskets", "crates", "packs"]

# Words for the letter-counting task (our own list of common English words).
WORDS = """
apple banana cherry orange lemon melon grape peach plum mango papaya coconut strawberry raspberry
blueberry tomato potato carrot onion garlic pepper cabbage lettuce spinach pumpkin broccoli
bread butter cheese coffee sugar honey pasta pizza cookie muffin pancake waffle noodle
house window garden kitchen bedroom bottle pillow blanket mirror ladder carpet curtain basket
school teacher student pencil eraser notebook library lesson science history letter number
river mountain forest valley island ocean desert meadow canyon volcano glacier lagoon harbor
rabbit turtle giraffe elephant monkey penguin dolphin kitten puppy parrot squirrel hamster
spider beetle butterfly mosquito caterpillar octopus jellyfish kangaroo gorilla zebra tiger
yellow purple silver golden scarlet crimson violet emerald
summer winter spring autumn morning evening midnight tomorrow yesterday weekend holiday
computer keyboard monitor printer program letterbox message picture balloon umbrella
bicycle airplane rocket engine tractor scooter subway railway bridge tunnel highway
mississippi committee accommodate occurrence possession embarrass necessary parallel
assessment balloon coffee address success illness happiness business princess
banana cinnamon pineapple watermelon avocado apricot
doctor dentist farmer pilot sailor painter singer dancer writer baker
happy sleepy funny sunny rainy cloudy windy snowy stormy
football baseball tennis hockey cricket volleyball swimming running jumping
""".split()
WORDS = sorted(set(WORDS))
LETTERS = "abcdefghijklmnopqrstuvwxyz"

SYSTEM_PROMPTS = ["You are a helpful assistant.", "You are a careful math tutor.",
                  "Answer the question.", "You are a friendly assistant who checks every step."]

# --------------------------------------------------------------------------- helpers


def rand_number(rng, lo_digits, hi_digits):
    d = rng.randint(lo_digits, hi_digits)
    if d == 1:
        return rng.randint(0, 9)
    return rng.randint(10 ** (d - 1), 10 ** d - 1)


def digits_rev(n):
    return [int(c) for c in reversed(str(n))]


def final_answer(ans):
    return f"The answer is {ans}."


def extract_answer(text):
    """The answer a checker compares: what follows the last 'The answer is ', up to a final '.'."""
    if THINK_CLOSE in text:
        text = text.split(THINK_CLOSE)[-1]
    m = re.findall(r"The answer is (.*?)\.?\s*$", text.strip(), flags=re.S)
    return m[-1].strip() if m else None


# --------------------------------------------------------------------------- traces


def add_trace(a, b):
    da, db = digits_rev(a), digits_rev(b)
    lines, carry, out = ["Add column by column from the right."], 0, []
    for i in range(max(len(da), len(db))):
        x = da[i] if i < len(da) else 0
        y = db[i] if i < len(db) else 0
        s = x + y + carry
        lines.append(f"{PLACES[i]}: {x}+{y}+{carry}={s}, write {s % 10}, carry {s // 10}")
        carry = s // 10
        out.append(s % 10)
    if carry:
        lines.append(f"{PLACES[len(out)]}: carry {carry}, write {carry}")
    lines.append(f"So {a}+{b}={a + b}.")
    return lines


def sub_trace(a, b):
    da, db = digits_rev(a), digits_rev(b)
    lines, borrow = ["Subtract column by column from the right."], 0
    for i in range(len(da)):
        x = da[i]
        y = db[i] if i < len(db) else 0
        if x - y - borrow < 0:
            lines.append(f"{PLACES[i]}: {x}-{y}-{borrow} is below 0, so {x + 10}-{y}-{borrow}={x + 10 - y - borrow}, "
                         f"borrow 1")
            borrow = 1
        else:
            lines.append(f"{PLACES[i]}: {x}-{y}-{borrow}={x - y - borrow}, borrow 0")
            borrow = 0
    lines.append(f"So {a}-{b}={a - b}.")
    return lines


def mul_trace(a, m):
    da = digits_rev(a)
    lines, carry = [f"Multiply each digit by {m} from the right."], 0
    for i, x in enumerate(da):
        p = x * m + carry
        lines.append(f"{PLACES[i]}: {x}*{m}+{carry}={p}, write {p % 10}, carry {p // 10}")
        carry = p // 10
    if carry:
        lines.append(f"{PLACES[len(da)]}: carry {carry}, write {carry}")
    lines.append(f"So {a}*{m}={a * m}.")
    return lines


def compare_trace(a, b, want_larger):
    word = "larger" if want_larger else "smaller"
    la, lb = len(str(a)), len(str(b))
    def digits(n):
        return "1 digit" if n == 1 else f"{n} digits"

    lines = [f"{a} has {digits(la)} and {b} has {digits(lb)}."]
    if la != lb:
        big = a if la > lb else b
        lines.append(f"More digits means larger, so {big} is larger.")
    else:
        lines.append("Same number of digits, so compare from the left.")
        sa, sb = str(a), str(b)
        for i in range(la):
            place = PLACES[la - 1 - i]
            if sa[i] == sb[i]:
                lines.append(f"{place}: {sa[i]} and {sb[i]} are equal")
            else:
                hi = max(sa[i], sb[i])
                lines.append(f"{place}: {sa[i]} and {sb[i]}, {hi} is larger")
                break
        big = max(a, b)
        lines.append(f"So {big} is larger.")
    ans = max(a, b) if want_larger else min(a, b)
    if not want_larger:
        lines.append(f"The {word} one is {ans}.")
    return lines, ans


def sort_trace(nums, ascending):
    rest = list(nums)
    pick = "smallest" if ascending else "largest"
    lines, order = [f"Take the {pick} number each time."], []
    while len(rest) > 1:
        v = min(rest) if ascending else max(rest)
        lines.append(f"from {', '.join(map(str, rest))} the {pick} is {v}")
        order.append(v)
        rest.remove(v)
    lines.append(f"the last one is {rest[0]}")
    order.append(rest[0])
    ans = ", ".join(map(str, order))
    lines.append(f"So the order is {ans}.")
    return lines, ans


def count_trace(word, letter):
    lines = [f"Spell {word}: {' '.join(word)}"]
    n, parts = 0, []
    for ch in word:
        if ch == letter:
            n += 1
            parts.append(f"{ch} yes ({n})")
        else:
            parts.append(f"{ch} no")
    lines.append(", ".join(parts))
    lines.append(f"So {letter} appears {n} times.")
    return lines, n


# --------------------------------------------------------------------------- problems


def make_problem(rng, task):
    """One problem: {task, key, prompt, trace (list of lines), answer (string)}."""
    if task == "add":
        a, b = rand_number(rng, 2, 4), rand_number(rng, 2, 4)
        prompt = rng.choice(["What is {a} + {b}?", "Compute {a} + {b}.", "Add {a} and {b}.",
                             "{a} + {b} = ?", "Calculate {a} plus {b}.", "What is the sum of {a} and {b}?"]
                            ).format(a=a, b=b)
        return dict(task=task, key=f"add:{a}:{b}", prompt=prompt, trace=add_trace(a, b), answer=str(a + b))
    if task == "sub":
        a, b = rand_number(rng, 2, 4), rand_number(rng, 1, 4)
        if a < b:
            a, b = b, a
        prompt = rng.choice(["What is {a} - {b}?", "Compute {a} - {b}.", "Subtract {b} from {a}.",
                             "{a} - {b} = ?", "Calculate {a} minus {b}.", "What is {a} take away {b}?"]
                            ).format(a=a, b=b)
        return dict(task=task, key=f"sub:{a}:{b}", prompt=prompt, trace=sub_trace(a, b), answer=str(a - b))
    if task == "mul":
        a, m = rand_number(rng, 2, 4), rng.randint(2, 9)
        prompt = rng.choice(["What is {a} * {m}?", "Compute {a} * {m}.", "Multiply {a} by {m}.",
                             "{a} * {m} = ?", "Calculate {a} times {m}.", "What is {a} x {m}?"]
                            ).format(a=a, m=m)
        return dict(task=task, key=f"mul:{a}:{m}", prompt=prompt, trace=mul_trace(a, m), answer=str(a * m))
    if task == "compare":
        a = rand_number(rng, 1, 4)
        if rng.random() < 0.5:  # often near-misses with the same length, which need the digit walk
            s = list(str(a).rjust(2, "1"))
            rng.shuffle(s)
            if s[0] == "0":
                s[0] = str(rng.randint(1, 9))
            b = int("".join(s))
        else:
            b = rand_number(rng, 1, 4)
        if a == b:
            b = a + rng.randint(1, 9)
        want_larger = rng.random() < 0.5
        word = "larger" if want_larger else "smaller"
        prompt = rng.choice(["Which is {w}, {a} or {b}?", "Which number is {w}: {a} or {b}?",
                             "Of {a} and {b}, which is {w}?"]).format(w=word, a=a, b=b)
        trace, ans = compare_trace(a, b, want_larger)
        return dict(task=task, key=f"compare:{a}:{b}:{word}", prompt=prompt, trace=trace, answer=str(ans))
    if task == "sort":
        k = rng.randint(3, 6)
        hi = rng.choice([99, 99, 999])
        nums = rng.sample(range(0, hi + 1), k)
        ascending = rng.random() < 0.6
        lst = ", ".join(map(str, nums))
        if ascending:
            prompt = rng.choice(["Sort from smallest to largest: {l}", "Put these numbers in increasing order: {l}",
                                 "Sort these numbers in ascending order: {l}"]).format(l=lst)
        else:
            prompt = rng.choice(["Sort from largest to smallest: {l}", "Put these numbers in decreasing order: {l}",
                                 "Sort these numbers in descending order: {l}"]).format(l=lst)
        trace, ans = sort_trace(nums, ascending)
        return dict(task=task, key=f"sort:{lst}:{ascending}", prompt=prompt, trace=trace, answer=ans)
    if task == "count":
        word = rng.choice(WORDS)
        letter = rng.choice(word) if rng.random() < 0.75 else rng.choice(LETTERS)
        prompt = rng.choice(['How many times does the letter "{c}" appear in "{w}"?',
                             "How many {c}'s are in the word {w}?",
                             "Count the letter {c} in the word {w}.",
                             'How many "{c}" are there in "{w}"?']).format(c=letter, w=word)
        trace, n = count_trace(word, letter)
        return dict(task=task, key=f"count:{word}:{letter}", prompt=prompt, trace=trace, answer=str(n))
    if task == "word":
        return make_word_problem(rng)
    raise ValueError(task)


def make_word_problem(rng):
    name, other = rng.sample(NAMES, 2)
    he, item = PRONOUN[name], rng.choice(ITEMS)
    kind = rng.choice(["add", "add2", "sub", "sub2", "mul"])
    if kind in ("add", "add2"):
        a, b = rand_number(rng, 1, 3), rand_number(rng, 1, 3)
        if kind == "add":
            prompt = f"{name} has {a} {item}. {he} buys {b} more. How many {item} does {name} have now?"
            intro = f"{name} starts with {a} {item} and gets {b} more, so add: {a}+{b}."
        else:
            prompt = (f"{name} collects {a} {item} on Monday and {b} {item} on Tuesday. "
                      f"How many {item} is that in total?")
            intro = f"Monday and Tuesday together, so add: {a}+{b}."
        trace, ans, key = [intro] + add_trace(a, b), a + b, f"word:add:{a}:{b}"
    elif kind in ("sub", "sub2"):
        a, b = rand_number(rng, 2, 3), rand_number(rng, 1, 3)
        if a < b:
            a, b = b, a
        if kind == "sub":
            prompt = f"{name} had {a} {item} and gave {b} to {other}. How many {item} does {name} have left?"
            intro = f"{name} gives some away, so subtract: {a}-{b}."
        else:
            prompt = f"A shop had {a} {item}. It sold {b} of them. How many {item} are left in the shop?"
            intro = f"Sold items are gone, so subtract: {a}-{b}."
        trace, ans, key = [intro] + sub_trace(a, b), a - b, f"word:sub:{a}:{b}"
    else:
        n, a, box = rng.randint(2, 9), rand_number(rng, 1, 3), rng.choice(CONTAINERS)
        prompt = f"{name} has {n} {box} with {a} {item} in each. How many {item} are there in total?"
        intro = f"{n} {box} of {a} each, so multiply: {a}*{n}."
        trace, ans, key = [intro] + mul_trace(a, n), a * n, f"word:mul:{a}:{n}"
    return dict(task="word", key=key, prompt=prompt, trace=trace, answer=str(ans))


# --------------------------------------------------------------------------- chat forms

FORMS = ["think", "nothink", "soft_think", "soft_nothink", "multi"]
FORM_WEIGHTS = [0.32, 0.24, 0.16, 0.16, 0.12]


def assistant_text(p, thinking):
    body = final_answer(p["answer"])
    if thinking:
        return f"{THINK_OPEN}\n" + "\n".join(p["trace"]) + f"\n{THINK_CLOSE}\n\n" + body
    return EMPTY_THINK + body


def with_switch(rng, prompt, switch):
    if switch is None:
        return prompt
    return f"{switch} {prompt}" if rng.random() < 0.2 else f"{prompt} {switch}"


def to_chat(rng, p, form, other=None):
    """A training record: {"messages": [...], "enable_thinking": bool|None, "task", "form"}.

    The final assistant message is the one to learn. For form "nothink" the chat template prefills
    the empty think block, so a trainer must not put loss on it (the content still carries it so the
    record is self-describing)."""
    msgs = []
    if rng.random() < 0.1:
        msgs.append({"role": "system", "content": rng.choice(SYSTEM_PROMPTS)})
    enable = None
    if form == "think":
        msgs.append({"role": "user", "content": p["prompt"]})
        thinking = True
    elif form == "nothink":
        msgs.append({"role": "user", "content": p["prompt"]})
        thinking, enable = False, False
    elif form == "soft_think":
        msgs.append({"role": "user", "content": with_switch(rng, p["prompt"], "/think")})
        thinking = True
    elif form == "soft_nothink":
        msgs.append({"role": "user", "content": with_switch(rng, p["prompt"], "/no_think")})
        thinking = False
    elif form == "multi":
        # Two turns; the first answer appears in history without its thinking, the most recent switch
        # (if any) decides the second.
        first_switch = rng.choice(["/think", "/no_think", None])
        second_switch = rng.choice(["/think", "/no_think", None, None])
        msgs.append({"role": "user", "content": with_switch(rng, other["prompt"], first_switch)})
        msgs.append({"role": "assistant", "content": final_answer(other["answer"])})
        msgs.append({"role": "user", "content": with_switch(rng, p["prompt"], second_switch)})
        latest = second_switch or first_switch
        thinking = latest != "/no_think"
    else:
        raise ValueError(form)
    msgs.append({"role": "assistant", "content": assistant_text(p, thinking)})
    return {"task": p["task"], "form": form, "enable_thinking": enable, "messages": msgs}


# --------------------------------------------------------------------------- streams


def test_sets(seed=TEST_SEED, per_task=TEST_PER_TASK):
    """{task: [problem, ...]} with distinct keys per task."""
    rng = random.Random(seed)
    out = {}
    for task in TASKS:
        seen, probs = set(), []
        while len(probs) < per_task:
            p = make_problem(rng, task)
            if p["key"] in seen:
                continue
            seen.add(p["key"])
            probs.append(p)
        out[task] = probs
    return out


def load_test_keys(data_dir=DATA_DIR):
    """Canonical keys of every held-out problem (from the committed files, or regenerated)."""
    keys = set()
    for task in TASKS:
        path = os.path.join(data_dir, f"test_{task}.jsonl")
        if not os.path.exists(path):
            return {p["key"] for probs in test_sets().values() for p in probs}
        with open(path) as f:
            for line in f:
                keys.add(json.loads(line)["key"])
    return keys


# Arithmetic needs the most practice; the comparison and counting traces are easier to learn.
TRAIN_TASK_WEIGHTS = {"add": 1.5, "sub": 1.3, "mul": 1.2, "compare": 0.7, "sort": 0.8, "count": 0.8, "word": 1.2}


def train_stream(seed, exclude_keys, task_weights=None):
    """Endless deterministic stream of training records, skipping held-out problems."""
    rng = random.Random(seed)
    weights = task_weights or TRAIN_TASK_WEIGHTS
    tasks = list(weights)
    w = [weights[t] for t in tasks]

    def problem():
        while True:
            p = make_problem(rng, rng.choices(tasks, w)[0])
            if p["key"] not in exclude_keys:
                return p

    while True:
        p = problem()
        form = rng.choices(FORMS, FORM_WEIGHTS)[0]
        yield to_chat(rng, p, form, other=problem() if form == "multi" else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=DATA_DIR)
    ap.add_argument("--per-task", type=int, default=TEST_PER_TASK)
    ap.add_argument("--train", type=int, default=0, help="also write N training records to train.jsonl")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    keys = set()
    for task, probs in test_sets(per_task=args.per_task).items():
        with open(os.path.join(args.out, f"test_{task}.jsonl"), "w") as f:
            for p in probs:
                keys.add(p["key"])
                f.write(json.dumps({"task": task, "prompt": p["prompt"], "answer": p["answer"],
                                    "key": p["key"]}) + "\n")
    print(f"wrote {len(TASKS)} test sets x {args.per_task} to {args.out}")
    if args.train:
        stream = train_stream(args.seed, keys)
        with open(os.path.join(args.out, "train.jsonl"), "w") as f:
            for _ in range(args.train):
                f.write(json.dumps(next(stream)) + "\n")
        print(f"wrote {args.train} training records to {os.path.join(args.out, 'train.jsonl')}")


if __name__ == "__main__":
    main()
