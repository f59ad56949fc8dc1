"""Mutation testing of microdiffusion.py: does the test suite catch real one-line bugs?

Each mutant below is one careless edit a contributor could make: (name, exact old text, new
text). For each, the repository's files (git ls-files, or the folder without .git) are copied
into a temporary folder, the old text of microdiffusion.py is replaced by the new, and
`python3 -m unittest discover tests` runs there. A mutant is caught when the suite fails (or
runs out of time); it SURVIVED when the suite still passes, which names a test worth writing.
A timing test can fail on a busy machine: when only one or two tests failed, they are run
again on the mutant, and if neither fails again the mutant is 'flaky?', not caught.

    python3 tests/mutants.py                      # every mutant, one at a time (~30 s each)
    python3 tests/mutants.py --jobs 2             # two at a time
    python3 tests/mutants.py --only no-wpe,temperature-ignored

The old text must occur exactly once in microdiffusion.py; a mutant whose text was edited away
(or now occurs twice) is reported as 'stale' and skipped: update its text. Exit status 0 when
every mutant was caught, 1 otherwise. Standard library only; POSIX (process groups).
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

TARGET = 'microdiffusion.py'

MUTANTS = [
    # the model
    ('mlp-residual', 'x_next[pos] = [a + b for a, b in zip(x_mlp, x_attn)]', 'x_next[pos] = x_mlp'),
    ('attn-residual', 'x_attn = [a + b for a, b in zip(x_attn, x[pos])]', 'x_attn = list(x_attn)'),
    ('no-wpe', '[te + pe for te, pe in', '[te for te, pe in'),
    ('causal-mask', '[k[hs] for k in keys], [v[hs] for v in values]',
     '[k[hs] for k in keys[:pos + 1]], [v[hs] for v in values[:pos + 1]]'),
    ('attn-scale-n_embd', 'dot(q, k) / math.sqrt(len(q))', 'dot(q, k) / math.sqrt(n_embd)'),
    ('rmsnorm-sum-not-mean', 'mean_square = dot(x, x) / len(x)', 'mean_square = dot(x, x)'),
    ('relu-identity', 'return [xi.relu() if isinstance(xi, Value) else max(0.0, xi) for xi in x]',
     'return list(x)'),
    ('readout-wpe', "letters = state_dict['wte'][:len(tok.chars)]", "letters = state_dict['wpe'][:len(tok.chars)]"),
    # the engine
    ('grad-log', '(1.0 / self.data,)', '(1.0 / self.data ** 2,)'),
    ('grad-pow', '(exponent * self.data ** (exponent - 1),)', '(exponent * self.data ** exponent,)'),
    ('grad-dot-swapped', 'ws + xs, x_data + w_data', 'ws + xs, w_data + x_data'),
    ('tape-not-cleared', 'Value.tape.clear()', 'pass'),
    # the loss and the noise
    ('loss-all-positions', 'loss = masked_loss(mask_predictor(noisy, tok, state_dict, masked), clean, masked)',
     'loss = masked_loss(mask_predictor(noisy, tok, state_dict), clean, range(len(noisy) - 1))'),
    ('end-maskable', 'return noisy + [tok.END]', 'return noisy + [tok.MASK if rng.random() < t else tok.END]'),
    ('corrupt-only-forced', 'rng.random() < t', 'rng.random() < 0 * t'),
    # the optimizer and the training loop
    ('adam-no-bias-correction', 'm_hat, v_hat = self.m[i] / m_correction, self.v[i] / v_correction',
     'm_hat, v_hat = self.m[i], self.v[i]'),
    ('adam-betas-swapped', 'beta1, beta2, eps_adam = 0.85, 0.99', 'beta1, beta2, eps_adam = 0.99, 0.85'),
    ('lr-no-decay', 'learning_rate * (1 - (step - 1) / n_steps)', 'learning_rate'),
    ('grad-not-averaged', 'grad = [sum(name_grads) / batch_size', 'grad = [sum(name_grads)'),
    # the sampler
    ('least-sure-first', 'sorted(masked, key=priority.get, reverse=True)', 'sorted(masked, key=priority.get)'),
    ('gumbel-grows', 'choice_noise * t * gumbel', 'choice_noise * (1 - t) * gumbel'),
    ('random-by-confidence', "if sampler == 'random':", 'if False:'),
    ('schedule-linear', 'return math.cos(math.pi / 2 * step / n_steps)', 'return 1 - step / n_steps'),
    ('temperature-ignored', 'softmax([z / temperature for z in logits[pos]])', 'softmax(logits[pos])'),
    ('reveal-one-more', 'n_to_reveal = len(masked) - round(n_hidden * t_next)',
     'n_to_reveal = len(masked) - round(n_hidden * t_next) + 1'),
    # the split
    ('split-no-shuffle', 'rng.shuffle(names)', 'pass'),
    ('split-overlap', 'return names[n_out:], names[:n_out]', 'return names[n_out - 1:], names[:n_out]'),
    # the evaluation
    ('nelbo-no-length', 'return -math.log(length_probs[len(name)]) + letters_nats', 'return letters_nats'),
    ('per-char-letters-only', 'sum(bounds) / sum(len(name) + 1 for name in names)',
     'sum(bounds) / sum(len(name) for name in names)'),
    ('masks-not-nested', '[sorted(order[:k]) for k in', '[sorted(rng.sample(range(len(name)), k)) for k in'),
    # the worker processes and the checkpoint
    ('workers-out-of-order', 'for future in futures for answer', 'for future in reversed(futures) for answer'),
    ('save-no-rng-state', "'state_dict': as_floats(state_dict), 'rng_state': rng.getstate()}",
     "'state_dict': as_floats(state_dict)}"),
]

# unittest -v prints each test as it starts, 'test_x (module.Class.test_x) ... ' (a subtest
# indented below it), and its result at the end of that line or of a later one (after a
# docstring, or output); the summary at the end lists errors first, then failures
STARTED = re.compile(r'^\s*(\w+) \(([\w.]+)\)')
RESULT = re.compile(r'(?:^|\.\.\. )(FAIL|ERROR)$')
SUMMARY = re.compile(r'^(?:FAIL|ERROR): (\w+) \(([\w.]+)\)', re.M)


def default_repo():
    """The repository this script stands in (as tests/mutants.py), else the current folder."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return here if os.path.exists(os.path.join(here, TARGET)) else os.getcwd()


def repo_files(repo):
    """The tracked files' paths, by git; without git, every file but .git's and caches."""
    try:
        out = subprocess.run(['git', 'ls-files', '-z'], cwd=repo, capture_output=True, check=True)
        files = [f for f in out.stdout.decode().split('\0') if f]
        if files:
            return files
    except (OSError, subprocess.CalledProcessError):
        pass
    files = []
    for parent, dirs, names in os.walk(repo):
        dirs[:] = [d for d in dirs if d not in ('.git', '__pycache__')]
        files += [os.path.relpath(os.path.join(parent, n), repo) for n in names]
    return files


def snapshot(repo):
    """Every file of the repository, read once: {path: bytes}. The suites run on these, so that
    edits made to the repository while the mutants run change nothing here."""
    files = {}
    for path in repo_files(repo):
        try:
            with open(os.path.join(repo, path), 'rb') as f:
                files[path] = f.read()
        except (FileNotFoundError, IsADirectoryError):  # tracked, but deleted (or a submodule)
            pass
    return files


RECHECK = 2  # a mutant caught by this many tests or fewer has them run again
RUNNING_GROUPS = set()  # the process groups of the suites now running, ended on a stop


def test_name(method, where):
    """'test_x', 'mod.Class.test_x' (3.11) or 'mod.Class' (older): 'mod.Class.test_x'."""
    return where if where.endswith('.' + method) else f'{where}.{method}'


def run_suite(files, source, timeout, tests=None):
    """Writes the snapshot `files` with `source` as microdiffusion.py into a temporary folder
    and runs the unit tests there (all, as discover finds them, or only `tests`, by the names
    discover gives them): (passed, timed out, failed tests in order, seconds, killed), killed
    the number of a signal from elsewhere that ended the suite (that is no catch), else 0."""
    folder = tempfile.mkdtemp(prefix='mutant-')
    try:
        for path, content in files.items():
            os.makedirs(os.path.join(folder, os.path.dirname(path)), exist_ok=True)
            with open(os.path.join(folder, path), 'wb') as f:
                f.write(source.encode('utf-8') if path == TARGET else content)
        log_path = os.path.join(folder, '.mutant-log')
        start = time.time()
        with open(log_path, 'wb') as log:
            # a session of its own: a timeout ends the suite and every process it started
            command = ['discover', '-v', 'tests'] if tests is None else ['-v'] + list(tests)
            process = subprocess.Popen([sys.executable, '-m', 'unittest'] + command,
                                       cwd=folder if tests is None else os.path.join(folder, 'tests'),
                                       stdout=log, stderr=subprocess.STDOUT,
                                       stdin=subprocess.DEVNULL, start_new_session=True,
                                       env=dict(os.environ, PYTHONDONTWRITEBYTECODE='1'))
            RUNNING_GROUPS.add(process.pid)
            try:  # wait for its end, but leave it unreaped: its group's id stays its own
                timed_out, deadline = True, start + timeout
                while time.time() < deadline:
                    if os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                        timed_out = False
                        break
                    time.sleep(0.2)
            finally:
                kill_group(process.pid)  # on a timeout or a stop, and the suite's leftovers
                RUNNING_GROUPS.discard(process.pid)
                code = process.wait()
        seconds = time.time() - start
        with open(log_path, encoding='utf-8', errors='replace') as f:
            output = f.read()
        failed, current = [], None  # in the order they failed
        for line in output.splitlines():
            started = STARTED.match(line)
            if started:
                current = test_name(*started.groups())
            if current and RESULT.search(line) and current not in failed:
                failed.append(current)
        for method, where in SUMMARY.findall(output):  # any the progress lines did not show
            if test_name(method, where) not in failed:
                failed.append(test_name(method, where))
        if timed_out and current:
            failed.append(f'(running: {current})')
        killed = -code if code < 0 and not timed_out else 0  # the signal's number
        return code == 0 and not timed_out, timed_out, failed, seconds, killed
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def kill_group(group):
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--only', metavar='NAME,...', help='run only these mutants')
    parser.add_argument('--jobs', type=int, default=1, metavar='N', help='suites at once (default 1)')
    parser.add_argument('--timeout', type=float, default=240, metavar='S',
                        help='seconds per suite; a mutant that runs out of time counts as caught (default 240)')
    parser.add_argument('--repo', default=default_repo(), help='the repository (default: the one this file is in)')
    parser.add_argument('--memory', type=float, default=4, metavar='GIB',
                        help='address space of each process of a suite, in GiB; 0: no limit (default 4)')
    parser.add_argument('--no-baseline', action='store_true', help='skip the run of the unmutated code')
    parser.add_argument('--no-recheck', action='store_true',
                        help="do not rerun the failing tests of a mutant that few tests caught")
    parser.add_argument('--list', action='store_true', help='list the mutants and stop')
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))  # the cleanup runs
    if args.memory:  # a mutant that makes memory grow (a tape never cleared) fails, not the machine
        import resource
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = int(args.memory * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (limit if hard == resource.RLIM_INFINITY else min(limit, hard), hard))
    names = [name for name, _, _ in MUTANTS]
    assert len(set(names)) == len(names), 'two mutants share a name'
    if args.list:
        for name, old, new in MUTANTS:
            print(f'{name:25} {old!r}\n{"":25} -> {new!r}')
        return 0
    chosen = MUTANTS
    if args.only:
        wanted = [w.strip() for w in args.only.split(',') if w.strip()]
        unknown = [w for w in wanted if w not in names]
        if unknown:
            parser.error(f"no mutant named {', '.join(unknown)}; --list lists them")
        chosen = [m for m in MUTANTS if m[0] in wanted]

    files = snapshot(args.repo)
    if TARGET not in files:
        parser.error(f'no {TARGET} in {args.repo}; pass --repo')
    source = files[TARGET].decode('utf-8')

    # every mutant's text checked before any suite runs
    runnable, rows = [], {}
    for name, old, new in chosen:
        n = source.count(old)
        if n != 1:
            rows[name] = ('stale', f'old text occurs {n} times in {TARGET}, not once: update the mutant')
            print(f'mutants.py: {name}: stale, the old text occurs {n} times, not once: {old!r}', file=sys.stderr)
            continue
        mutated = source.replace(old, new)
        try:
            compile(mutated, TARGET, 'exec')
        except SyntaxError as err:
            rows[name] = ('invalid', f'the new text is not Python: {err.msg}')
            continue
        runnable.append((name, mutated))

    if not args.no_baseline:
        print(f'baseline: the unmutated suite in a copy of {args.repo} ...', file=sys.stderr, flush=True)
        passed, timed_out, failed, seconds, killed = run_suite(files, source, args.timeout)
        if killed:
            print(f'mutants.py: the unmutated suite was killed by signal {killed}', file=sys.stderr)
            return 2
        if not passed:
            print(f"mutants.py: the unmutated suite fails ({'timeout' if timed_out else ', '.join(failed[:3])}); "
                  f"fix it first, or every mutant looks caught", file=sys.stderr)
            return 2
        print(f'baseline: passes in {seconds:.0f} s', file=sys.stderr, flush=True)

    def run_one(item):
        """The suite on a mutant. A timing test can fail on a busy machine, so a mutant that
        at most RECHECK tests caught has those tests run again: if none fails again, it is
        'flaky?', not caught."""
        name, mutated = item
        passed, timed_out, failed, seconds, killed = run_suite(files, mutated, args.timeout)
        again = None
        if not passed and not timed_out and not killed and 0 < len(failed) <= RECHECK and not args.no_recheck:
            ids = sorted({test.removesuffix('.setUpClass') for test in failed})  # a class: all of it
            again = run_suite(files, mutated, args.timeout, ids)[2]
        return name, (passed, timed_out, failed, seconds, again, killed)

    pool = concurrent.futures.ThreadPoolExecutor(max(1, args.jobs))
    try:
        futures = [pool.submit(run_one, item) for item in runnable]
        for future in concurrent.futures.as_completed(futures):
            name, (passed, timed_out, failed, seconds, again, killed) = future.result()
            if killed:  # not the mutant's doing: run it again later
                rows[name] = ('killed', 'the suite was killed by a signal from elsewhere: not counted')
            elif passed:
                rows[name] = ('SURVIVED', '')
            elif again == []:
                rows[name] = ('flaky?', f"failed once, passed on a rerun: {', '.join(failed)}")
            else:
                shown = ', '.join(failed[:3]) + (f' (+{len(failed) - 3} more)' if len(failed) > 3 else '')
                rows[name] = ('caught', (f'TIMEOUT after {args.timeout:.0f} s; ' if timed_out else '') + shown)
            print(f'{name}: {rows[name][0]} ({seconds:.0f} s)', file=sys.stderr, flush=True)
    finally:  # on Ctrl-C or SIGTERM too: no suite goes on running
        for group in list(RUNNING_GROUPS):
            kill_group(group)
        pool.shutdown(wait=True, cancel_futures=True)

    width = max(len('mutant'), *(len(name) for name, _, _ in chosen))
    print(f"{'mutant':{width}}  {'result':8}  first failing tests")
    print(f"{'-' * width}  {'-' * 8}  {'-' * 19}")
    for name, _, _ in chosen:
        result, detail = rows[name]
        print(f'{name:{width}}  {result:8}  {detail}')
    ran = [name for name, _, _ in chosen if rows[name][0] in ('caught', 'SURVIVED', 'flaky?')]
    caught = sum(rows[name][0] == 'caught' for name in ran)
    flaky = sum(rows[name][0] == 'flaky?' for name in ran)
    skipped = len(chosen) - len(ran)
    print(f'caught {caught} of {len(ran)}' + (f'; {flaky} flaky? (a failure that did not repeat)' if flaky else '')
          + (f'; {skipped} stale, invalid or killed, not counted' if skipped else ''))
    return 0 if caught == len(ran) and not skipped else 1


if __name__ == '__main__':
    sys.exit(main())
