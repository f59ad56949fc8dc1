"""The names that come with the code, the split (held out means never trained on), and --score."""
import hashlib
import os
import re
import sys
import tempfile
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)
import microdiffusion as md
import runs
from test_cli import NAMES, Folder, main_in, run_script

INPUT = os.path.join(ROOT, 'input.txt')
NAMES_SHA256 = '0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d'  # makemore's names.txt


class TestNamesFile(Folder):
    def test_input_txt_is_makemores_names_txt(self):
        with open(INPUT, 'rb') as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), NAMES_SHA256)
        lines, too_long, sha256 = md.read_names(INPUT)
        self.assertEqual((len(lines), len(set(lines)), too_long, sha256), (32033, 29494, 0, NAMES_SHA256))

    def test_the_default_run_holds_out_1000_names_it_never_trains_on(self):
        code, stdout, stderr = main_in(self.folder, ['--input', INPUT, '--num-steps', '1', '--workers', '1',
                                                     '--eval-names', '0', '--num-samples', '0'])
        self.assertEqual(code, 0, stderr)
        self.assertIn('names: 29,494 (2,539 repeated lines dropped): 28,494 for training, 1,000 held out', stdout)
        for seed in (42, 1, 2):
            data = runs.split(INPUT, seed)
            self.assertEqual(len(data.heldout_names), 1000)
            self.assertEqual(set(data.heldout_names) & set(data.train_names), set())

    def test_repeated_lines_are_dropped_before_the_split(self):
        # every name twice, some three times, in another case or with spaces: 36 names, 80 lines
        lines = NAMES + [name.upper() for name in NAMES] + [f'  {name} ' for name in NAMES[:8]]
        self.write('names.txt', '\n'.join(lines))
        with mock.patch.object(md, 'split', wraps=md.split) as split:
            code, stdout, stderr = main_in(self.folder, ['--input', 'names.txt', '--num-steps', '1', '--workers',
                                                         '1', '--eval-names', '0', '--num-samples', '0'])
        self.assertEqual(code, 0, stderr)
        self.assertIn('names: 36 (44 repeated lines dropped): 33 for training, 3 held out', stdout)
        (names, _), _ = split.call_args
        self.assertEqual(names, NAMES)  # each name once, where it first stood
        data = runs.split(os.path.join(self.folder, 'names.txt'), 42)  # the scripts' split is main()'s
        self.assertEqual(sorted(data.train_names + data.heldout_names), sorted(NAMES))
        self.assertEqual(set(data.train_names) & set(data.heldout_names), set())


class TestScore(Folder):
    @classmethod
    def setUpClass(cls):  # a model that has read 300 real names, one at a time
        cls.trained = tempfile.TemporaryDirectory()
        cls.saved = run_script(['--input', INPUT, '--num-steps', '300', '--batch-size', '1', '--eval-names', '0',
                                '--num-samples', '0', '--save', 'model.json'], cls.trained.name)

    @classmethod
    def tearDownClass(cls):
        cls.trained.cleanup()

    def test_a_real_name_scores_lower_than_a_keyboard_mash(self):
        self.assertEqual(self.saved.returncode, 0, self.saved.stderr)
        result = run_script(['--input', INPUT, '--load', 'model.json', '--score', 'Emma', 'qxzvkj'],
                            self.trained.name)
        self.assertEqual((result.returncode, result.stderr), (0, ''))
        self.assertIn('over every order', result.stdout)
        rows = re.findall(r'^ *(\w+): +([\d.]+) = +([\d.]+) \+ +([\d.]+), ([\d.]+) per character$',
                          result.stdout, re.M)
        self.assertEqual([row[0] for row in rows], ['emma', 'qxzvkj'])  # lower-cased, as the names are
        (_, emma, emma_length, emma_letters, emma_per_char), (_, mash, _, mash_letters, mash_per_char) = rows
        self.assertAlmostEqual(float(emma), float(emma_length) + float(emma_letters), delta=0.011)
        self.assertAlmostEqual(float(emma_per_char), float(emma) / 5, delta=0.006)
        self.assertLess(float(emma_per_char) + 0.5, float(mash_per_char))
        self.assertNotIn('NELBO', result.stdout)
        self.assertNotIn('sample', result.stdout)

    def test_a_name_that_cannot_be_scored_is_one_line(self):
        self.write('names.txt', '\n'.join(NAMES))
        for name, expect in (('r2d2', "cannot score 'r2d2': a name is 1 to 15 of the letters abc"),
                             ('zoë!', "cannot score 'zoë!': a name is 1 to 15 of the letters"),
                             ('a' * 16, f"cannot score '{'a' * 16}': a name is 1 to 15 of the"),
                             ('', "cannot score '': a name is 1 to 15 of the letters")):
            with self.subTest(name=name):
                self.assert_fails_cleanly(['--input', 'names.txt', '--score', 'emma', name], expect=expect)


if __name__ == '__main__':
    unittest.main()
