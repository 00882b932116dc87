"""Allocation-heavy Python workload for tests/programs/run_program.sh.

Builds and tears down dicts, lists, strings, bytes and JSON documents in the
main thread and in a few worker threads, and prints digests that depend only
on the computation: the same output with any correct malloc.
"""
import hashlib
import json
import threading

MASK = (1 << 64) - 1


def lcg(state):
    return (state * 6364136223846793005 + 1442695040888963407) & MASK


def dict_churn(seed, rounds):
    """A dict of lists of strings that grows, mutates and shrinks."""
    table = {}
    state = seed
    for i in range(rounds):
        state = lcg(state)
        key = "k%05x" % (state >> 48)
        # Strings from tiny to a few KiB: small objects and malloc'd buffers.
        text = ("%x" % state) * (1 + (state >> 20) % 300)
        table.setdefault(key, []).append(text)
        if i % 3 == 0:
            state = lcg(state)
            victim = "k%05x" % (state >> 48)
            table.pop(victim, None)
    digest = hashlib.sha256()
    for key in sorted(table):
        digest.update(key.encode())
        for text in table[key]:
            digest.update(text.encode())
    return len(table), digest.hexdigest()


def list_churn(seed, rounds):
    """Lists of tuples sorted, sliced, concatenated and rebuilt."""
    state = seed
    items = []
    for _ in range(rounds):
        state = lcg(state)
        items.append((state % 1000, "v%d" % (state >> 40), bytes(state % 97)))
    total = 0
    for step in range(20):
        items.sort()
        items = items[step:] + [(a + 1, b + "x", c + b"y") for a, b, c in items[:step * 50]]
        total += sum(a for a, _, _ in items[:: 7])
    return len(items), total


def json_churn(seed, docs):
    """JSON documents built, dumped and parsed back."""
    state = seed
    digest = hashlib.sha256()
    for _ in range(docs):
        state = lcg(state)
        doc = {
            "id": state >> 32,
            "tags": ["t%d" % ((state >> s) & 0xFF) for s in range(0, 64, 4)],
            "nested": {"k%d" % j: list(range(j * (state % 5))) for j in range(12)},
        }
        text = json.dumps(doc, sort_keys=True)
        back = json.loads(text)
        digest.update(json.dumps(back, sort_keys=True).encode())
    return digest.hexdigest()


def workload(seed):
    return (dict_churn(seed, 30000), list_churn(seed, 15000), json_churn(seed, 1000))


def main():
    results = [None] * 4

    def run(index):
        results[index] = workload(1000 + index)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(1, 4)]
    for t in threads:
        t.start()
    run(0)
    for t in threads:
        t.join()
    overall = hashlib.sha256()
    for index, result in enumerate(results):
        line = "worker %d: %r" % (index, result)
        print(line)
        overall.update(line.encode())
    # A big string built from many small ones, then split up again.
    blob = "\n".join("%d:%s" % (i, "x" * (i % 64)) for i in range(200000))
    parts = blob.split("\n")
    print("blob:", len(blob), len(parts), hashlib.sha256(blob.encode()).hexdigest())
    print("digest:", overall.hexdigest())


if __name__ == "__main__":
    main()
