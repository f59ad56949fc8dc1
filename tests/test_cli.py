"""The script as a user runs it: end to end on small files, and every kind of bad input."""
import contextlib
import gzip
import hashlib
import io
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import unittest
from unittest import mock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, 'microdiffusion.py')
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, 'tests'))
import microdiffusion as md
import runs

NAMES = ('emma olivia ava isabella sophia mia charlotte amelia harper evelyn abigail emily '
         'elizabeth mila ella avery sofia camila aria scarlett victoria madison luna grace '
         'chloe penelope layla riley zoey nora lily eleanor hannah lillian addison aubrey').split()


# the script's main(), with worker processes started by spawn instead of fork
SPAWN_MAIN = (f"import multiprocessing, sys; sys.path.insert(0, {ROOT!r}); import microdiffusion; "
              f"multiprocessing.set_start_method('spawn'); sys.exit(microdiffusion.main(sys.argv[1:]))")


def group_members(group):
    """The processes of a process group that are still running (not zombies, which only wait
    for their parent to collect their exit status)."""
    members = []
    for pid in filter(str.isdigit, os.listdir('/proc')):
        try:
            with open(f'/proc/{pid}/stat') as f:
                state, _, pgrp = f.read().rsplit(')', 1)[1].split()[:3]
        except OSError:
            continue
        if int(pgrp) == group and state != 'Z':
            members.append(int(pid))
    return members


def run_script(args, cwd, timeout=120):
    return subprocess.run([sys.executable, SCRIPT] + args, cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def snapshot(folder):
    """Every file below folder with the hash of its bytes."""
    result = {}
    for parent, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, 'rb') as f:
                result[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return result


def main_in(folder, args):
    """main() in this process, in folder: its exit status, stdout and stderr."""
    stdout, stderr = io.StringIO(), io.StringIO()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            try:
                md.main(args)
                code = 0
            except SystemExit as stop:
                code = stop.code
    finally:
        os.chdir(cwd)
    return code, stdout.getvalue(), stderr.getvalue()


def without_times(stdout):
    return re.sub(r'\|[^|]*s left \|', '', stdout)


class Folder(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory()
        self.folder = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def assert_fails_cleanly(self, args, code=1, expect=None):
        before = snapshot(self.folder)
        result = run_script(args, self.folder)
        self.assertEqual(result.returncode, code, result.stdout + result.stderr)
        self.assertNotIn('Traceback', result.stderr)
        self.assertEqual(len(result.stderr.splitlines()), 1, result.stderr)
        self.assertTrue(result.stderr.startswith('microdiffusion.py: error: '), result.stderr)
        if expect:
            self.assertIn(expect, result.stderr)
        self.assertEqual(snapshot(self.folder), before)  # nothing of the user's changed
        return result

    def stop_run(self, args, sig, start_method='fork', wait=0.0, group=False, after='step ',
                 again=()):
        """Start the script in a process group of its own; once it has printed a line that starts
        with `after`, wait `wait` seconds and stop it (then again after each delay in `again`):
        SIGINT to the whole group, as a terminal's Ctrl-C does,
        SIGTERM or SIGKILL to the main process, as kill does (or, with group, to every process of
        the run, as a service manager does). Returns its exit code, its stderr,
        and the processes of the group still running 2 s later. A parent started in the
        background may ignore SIGINT, and an ignored SIGINT stays ignored: the child gets the
        default, as from a terminal."""
        def own_group_default_sigint():
            os.setpgrp()
            signal.signal(signal.SIGINT, signal.SIG_DFL)
        command = [sys.executable] + (['-c', SPAWN_MAIN] if start_method == 'spawn' else [SCRIPT])
        process = subprocess.Popen(command + args, cwd=self.folder, stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE, text=True, preexec_fn=own_group_default_sigint)
        try:
            for line in process.stdout:
                if line.startswith(after):  # e.g. training has started
                    break
            started = time.time()
            for delay in (wait,) + tuple(again):
                time.sleep(delay)
                if sig == signal.SIGINT or group:
                    os.killpg(process.pid, sig)
                else:
                    os.kill(process.pid, sig)
            _, stderr = process.communicate(timeout=60)
            self.assertLess(time.time() - started, 5 + sum(again), 'the run took long to stop')
            deadline = time.time() + 2
            while group_members(process.pid) and time.time() < deadline:
                time.sleep(0.05)
            return process.returncode, stderr, group_members(process.pid)
        finally:
            for pid in group_members(process.pid):  # only this run's processes
                os.kill(pid, signal.SIGKILL)
            process.kill()

    def write(self, name, content):
        path = os.path.join(self.folder, name)
        with open(path, 'wb') as f:
            f.write(content if isinstance(content, bytes) else content.encode('utf-8'))
        return path


class TestEndToEnd(Folder):
    def test_runs_and_is_reproducible(self):
        self.write('names.txt', '\n'.join(NAMES) + '\n')
        args = ['--input', 'names.txt', '--num-steps', '10', '--num-samples', '4', '--eval-names', '3', '--trace']
        first, second = run_script(args, self.folder), run_script(args, self.folder)
        self.assertEqual(first.returncode, 0, first.stderr)
        self.assertEqual(first.stderr, '')
        lines = first.stdout.splitlines()
        self.assertIn('names: 36 (0 repeated lines dropped): 33 for training, 3 held out', lines)
        n_chars = len(set(''.join(NAMES)))
        self.assertIn(f'vocabulary: {n_chars + 2} tokens ({n_chars} characters, MASK and END)', lines)
        self.assertIn(f'parameters: {(n_chars + 2) * 16 + 6400:,}', lines)  # wte grows, the rest is 6,400
        self.assertEqual(sum(1 for line in lines if re.match(r'sample +\d+: [a-z]+', line)), 4)
        self.assertTrue(any(line.startswith('held-out NELBO: ') for line in lines))
        self.assertTrue(any(line.startswith('step    10 / 10 | loss ') for line in lines))
        self.assertIn("--- how sample 1 emerged ('_' is MASK, '.' is END; t after each step) ---", lines)
        first_name = re.search(r'sample  1: ([a-z]+)', first.stdout).group(1)
        trace_rows = lines[lines.index(' step      t  temp  canvas') + 1:]
        self.assertEqual(trace_rows[0].split()[-1], '_' * len(first_name) + '.')  # L MASKs, then END
        self.assertEqual(trace_rows[-1].split()[-1], first_name + '.')
        self.assertTrue(all(len(row.split()[-1]) == len(first_name) + 1 for row in trace_rows))
        self.assertEqual(trace_rows[0].split()[:3], ['0', '1.000', '-'])  # t after each step: 1 before any,
        self.assertEqual(round(len(first_name) * float(trace_rows[-1].split()[1])), 0)  # none hidden after
        self.assertEqual(without_times(first.stdout), without_times(second.stdout))
        other_seed = run_script(args + ['--seed', '7'], self.folder)
        self.assertNotEqual(without_times(first.stdout), without_times(other_seed.stdout))

    def test_one_held_out_name_has_no_error_bar_and_help_names_the_defaults(self):
        self.write('names.txt', '\n'.join(NAMES))
        result = run_script(['--input', 'names.txt', '--num-steps', '2', '--num-samples', '1', '--eval-names', '1'],
                            self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertRegex(result.stdout, r'\nheld-out NELBO: \d\.\d{3} nats/char on 1 name never trained on\n')
        self.assertIn('--- 1 sample (confidence sampler, 64 denoising steps) ---', result.stdout)
        text = ' '.join(run_script(['--help'], self.folder).stdout.split())  # unwrapped
        for default in ('default: input.txt, beside this file', 'default 1075', 'default 8', 'default 42', 'default 1000',
                        'default 20', 'default 64', 'default confidence'):
            self.assertIn(default, text)

    def test_marks_say_what_the_model_saw(self):
        # a long list and a short training: most training names are never reached
        names = sorted({a + b + c for a in 'bdklmnrst' for b in 'aeiou' for c in 'nlry'})
        path = self.write('names.txt', '\n'.join(names) + '\n')
        result = run_script(['--input', 'names.txt', '--num-steps', '40', '--batch-size', '2',
                             '--num-samples', '40', '--eval-names', '0', '--workers', '1'], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        data = runs.split(path, 42)
        train_names, heldout_names = data.train_names, data.heldout_names
        trained_on = set(train_names[:80])
        counts = {'trained': 0, 'unseen': 0, 'new': 0}
        for name, mark in re.findall(r'^sample +\d+: ([a-z]+)(.*)$', result.stdout, re.M):
            if name in trained_on:
                self.assertEqual(mark, '  (trained on)')
                counts['trained'] += 1
            elif name in train_names or name in heldout_names:
                self.assertEqual(mark, '  (real, never trained on)')
                counts['unseen'] += 1
            else:
                self.assertEqual(mark, '')
                counts['new'] += 1
        unseen = f"{counts['unseen']} real name" + ('' if counts['unseen'] == 1 else 's')
        self.assertIn(f"{counts['new']} new, {counts['trained']} the model was trained on, {unseen} it never saw",
                      result.stdout)
        self.assertGreater(counts['unseen'], 0)  # the case the marks are for

    def test_num_samples_zero_trains_only(self):
        self.write('names.txt', '\n'.join(NAMES))
        result = run_script(['--input', 'names.txt', '--num-steps', '3', '--num-samples', '0', '--eval-names', '0'], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertNotIn('sample', result.stdout)
        self.assertIn('step     3 / 3', result.stdout)

    def test_template(self):
        self.write('names.txt', '\n'.join(NAMES))
        result = run_script(['--input', 'names.txt', '--num-steps', '3', '--num-samples', '3', '--eval-names', '0',
                             '--template', 'ma_*'], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        names = re.findall(r'sample +\d+: (\w+)', result.stdout)
        self.assertEqual(len(names), 3)
        self.assertTrue(all(name.startswith('ma') and len(name) >= 3 for name in names), names)

    def test_untidy_data_works(self):
        # Windows line endings, spaces, capitals, duplicates, a byte-order mark, a blank line
        self.write('names.txt', '\ufeffEmma\r\n  olivia \r\n\r\nAVA\r\nava\r\n' + '\r\n'.join(NAMES) + '\r\n')
        result = run_script(['--input', 'names.txt', '--num-steps', '3', '--num-samples', '2', '--eval-names', '0'], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        # Emma, olivia, AVA and ava stand in NAMES too: each name is kept once
        self.assertIn('names: 36 (4 repeated lines dropped): 33 for training, 3 held out', result.stdout)
        n_chars = len(set(''.join(NAMES)))  # capitals were lower-cased: no new characters
        self.assertIn(f'vocabulary: {n_chars + 2} tokens ({n_chars} characters, MASK and END)', result.stdout)

    def test_long_names_are_skipped_and_counted(self):
        self.write('names.txt', '\n'.join(NAMES + ['c' * 15, 'a' * 16, 'b' * 30]))
        result = run_script(['--input', 'names.txt', '--num-steps', '3', '--num-samples', '1', '--eval-names', '0'], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('skipped 2 names longer than 15 characters', result.stdout)  # 15 letters and END fit
        self.assertIn('names: 37 ', result.stdout)
        self.write('names.txt', '\n'.join(NAMES + ['a' * 16]))
        result = run_script(['--input', 'names.txt', '--num-steps', '1', '--num-samples', '0', '--eval-names', '0'], self.folder)
        self.assertIn('skipped 1 name longer than 15 characters', result.stdout)

    def test_characters_beyond_letters_join_the_vocabulary(self):
        extra = ["o'neil", 'jean-luc', 'zoë', 'r2d2']
        self.write('names.txt', '\n'.join(NAMES + extra))
        result = run_script(['--input', 'names.txt', '--num-steps', '3', '--num-samples', '1', '--eval-names', '0',
                             '--template', "o'*"], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        n_chars = len(set(''.join(NAMES + extra)))
        self.assertTrue({"'", '-', '2', 'ë'} < set(''.join(NAMES + extra)) - set(''.join(NAMES)))
        self.assertIn(f'vocabulary: {n_chars + 2} tokens ({n_chars} characters, MASK and END)', result.stdout)
        self.assertIn(f'parameters: {(n_chars + 2) * 16 + 6400:,}', result.stdout)
        self.assertRegex(result.stdout, r"sample  1: o'")

    def test_a_single_name(self):
        self.write('one.txt', 'anna\n')
        result = run_script(['--input', 'one.txt', '--num-steps', '5', '--num-samples', '2'], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('names: 1 (0 repeated lines dropped): 1 for training, 0 held out', result.stdout)
        self.assertNotIn('NELBO', result.stdout)  # there is no held-out name to measure it on
        self.assertEqual(len(re.findall(r'sample +\d+: ', result.stdout)), 2)


class TestBadInput(Folder):
    def test_bad_data_files(self):
        self.write('names.txt', '\n'.join(NAMES))
        self.write('empty.txt', '')
        self.write('blank.txt', '\n   \n\t\n\r\n')
        self.write('random.bin', bytes(range(256)) * 4)
        self.write('names.gz', gzip.compress('\n'.join(NAMES).encode()))
        self.write('latin1.txt', 'zoë\nmia\n'.encode('latin-1'))
        self.write('control.txt', 'anna\nbo\x00b\n')
        self.write('nbsp.txt', 'mary\xa0ann\nbob\n')
        self.write('underscore.txt', 'anna\nmary_ann\n')
        self.write('star.txt', 'star*\n')
        self.write('dot.txt', 'st. john\n')
        self.write('big.txt', b'ab' + 'é'.encode() * 2 ** 25)  # the cut at 64 MiB splits an é
        self.write('toolong.txt', 'a' * 16 + '\n' + 'b' * 20 + '\n')
        os.mkdir(os.path.join(self.folder, 'adir'))
        cases = {
            'missing.txt': 'cannot read missing.txt: No such file or directory',
            'adir': 'cannot read adir: Is a directory',
            'empty.txt': 'contains no names of 1 to 15 characters',
            'blank.txt': 'contains no names of 1 to 15 characters',
            'random.bin': 'is not UTF-8 text',
            'names.gz': 'is not UTF-8 text',
            'latin1.txt': 'is not UTF-8 text',
            'control.txt': "line 2 holds '\\x00' (U+0000), which a name cannot hold",
            'nbsp.txt': "line 1 holds '\\xa0' (U+00A0), which a name",
            'underscore.txt': "line 2 holds '_' (U+005F), which a name cannot hold: only printing characters, except '_*.'",
            'star.txt': "line 1 holds '*' (U+002A), which",
            'dot.txt': "line 1 holds '.' (U+002E), which",
            '/dev/zero': 'is over 64 MiB',
            'big.txt': 'big.txt is over 64 MiB',
            'toolong.txt': 'contains no names of 1 to 15 characters',
        }
        for path, expect in cases.items():
            with self.subTest(input=path):
                self.assert_fails_cleanly(['--input', path, '--num-steps', '2'], expect=expect)

    def test_bad_template(self):
        self.write('names.txt', '\n'.join(NAMES))
        for template in ('q*', '', 'a' * 16, 'a' * 16 + '*', 'a*b'):
            with self.subTest(template=template):
                self.assert_fails_cleanly(['--input', 'names.txt', '--template', template],
                                          expect=f"the template {template!r} is not 1 to 15 of '_' and the letters")

    def test_bad_flags(self):
        self.write('names.txt', '\n'.join(NAMES))
        for flags in (['--num-steps', '0'], ['--num-steps', '-3'], ['--num-steps', 'many'], ['--num-steps', '2.5'],
                      ['--num-samples', '-1'], ['--denoise-steps', '0'], ['--eval-names', 'x'],
                      ['--seed', 'abc'], ['--sampler', 'greedy'], ['--bogus'], ['--batch-size', '0'],
                      ['--batch-size', 'x'], ['--workers', '0'], ['--workers', '-2'], ['--save'], ['--load'],
                      ['--batch-size', '1001'], ['--batch-size', '1000000000'], ['--save', ''],
                      ['--load', ''], ['--input', '']):
            with self.subTest(flags=flags):
                self.assert_fails_cleanly(['--input', 'names.txt'] + flags, code=2)

    def test_score_refuses_the_flags_it_would_ignore(self):
        self.write('names.txt', '\n'.join(NAMES))
        for flag in (['--template', 'ma*'], ['--num-samples', '3'], ['--trace'], ['--sampler', 'random'],
                     ['--denoise-steps', '4'], ['--eval-names', '5']):
            with self.subTest(flag=flag):
                self.assert_fails_cleanly(['--input', 'names.txt', '--score', 'emma'] + flag, code=2,
                                          expect=f'--score prints scores, not samples: leave out {flag[0]}')

    def test_the_default_names_are_the_ones_beside_the_script(self):
        result = run_script(['--num-steps', '1', '--eval-names', '0', '--num-samples', '0'], self.folder)
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertIn('names: 29,494 (2,539 repeated lines dropped)', result.stdout)

    def test_ctrl_c_during_training(self):
        self.write('names.txt', '\n'.join(NAMES))
        before = snapshot(self.folder)
        code, stderr, left = self.stop_run(['--input', 'names.txt', '--num-steps', '100000', '--workers', '1'],
                                           signal.SIGINT)
        self.assertEqual((code, left), (130, []))
        self.assertEqual(len(stderr.splitlines()), 1, stderr)
        self.assertRegex(stderr, r'^microdiffusion.py: interrupted at training step \d+ of 100000')
        self.assertEqual(snapshot(self.folder), before)


class TestInProcess(Folder):
    """main() in this process: the names file that comes with the code, and unreadable files."""

    def test_a_missing_input_txt_says_how_to_get_it_back(self):
        with mock.patch.object(md, 'HERE', self.folder):  # a checkout without input.txt
            code, stdout, stderr = main_in(self.folder, ['--num-steps', '2'])
        self.assertEqual((code, stdout), (1, ''))
        self.assertEqual(stderr, f'microdiffusion.py: error: {self.folder}/input.txt is missing: '
                                 'git checkout input.txt, or pass --input\n')
        self.assertEqual(os.listdir(self.folder), [])
        code, _, stderr = main_in(self.folder, ['--input', 'other.txt'])  # a path of the user's own
        self.assertEqual(stderr, 'microdiffusion.py: error: cannot read other.txt: No such file or directory\n')

    def test_unreadable_file(self):
        path = self.write('names.txt', '\n'.join(NAMES))
        with mock.patch.object(md, 'open', side_effect=PermissionError(13, 'Permission denied'), create=True):
            code, _, stderr = main_in(self.folder, ['--input', path])
        self.assertEqual(code, 1)
        self.assertEqual(stderr.strip(), f'microdiffusion.py: error: cannot read {path}: Permission denied')


if __name__ == '__main__':
    unittest.main()
