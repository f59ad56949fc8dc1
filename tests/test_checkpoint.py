"""Train once, sample many: --save writes the model, --load uses it without training."""
import json
import os
import shutil
import signal
import sys
import tempfile
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
import runs
from test_cli import NAMES, Folder, run_script, snapshot, without_times

TRAIN = ['--input', 'names.txt', '--num-steps', '12', '--batch-size', '2', '--num-samples', '4', '--eval-names', '3']
AFTER = ['--input', 'names.txt', '--num-samples', '4', '--eval-names', '3']


def after_training(stdout):
    """What follows the training lines: the NELBO and the samples."""
    lines = without_times(stdout).splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith('held-out NELBO')):]


class TestSaveAndLoad(Folder):
    @classmethod
    def setUpClass(cls):  # one training for the class; every test gets its own copy of the files
        cls.trained = tempfile.TemporaryDirectory()
        with open(os.path.join(cls.trained.name, 'names.txt'), 'w') as f:
            f.write('\n'.join(NAMES) + '\n')
        cls.saved = run_script(TRAIN + ['--save', 'model.json', '--trace'], cls.trained.name)

    @classmethod
    def tearDownClass(cls):
        cls.trained.cleanup()

    def setUp(self):
        super().setUp()
        self.assertEqual(self.saved.returncode, 0, self.saved.stderr)
        for name in ('names.txt', 'model.json'):
            shutil.copy(os.path.join(self.trained.name, name), self.folder)
        self.model_path = os.path.join(self.folder, 'model.json')

    def test_load_prints_the_same_nelbo_and_names(self):
        loaded = run_script(AFTER + ['--load', 'model.json', '--trace'], self.folder)
        self.assertEqual((loaded.returncode, loaded.stderr), (0, ''))
        self.assertIn('loaded model.json: trained 12 steps of 2 names\n', loaded.stdout)
        self.assertNotIn('step ', loaded.stdout.split('loaded')[1].split('---')[0])  # no training
        self.assertEqual(after_training(self.saved.stdout), after_training(loaded.stdout))
        # and a plain run without --save prints what the saving run printed
        plain = run_script(TRAIN + ['--trace'], self.folder)
        self.assertEqual(without_times(plain.stdout), without_times(self.saved.stdout).replace(
            next(line for line in self.saved.stdout.splitlines() if line.startswith('saved')) + '\n', ''))

    def test_the_file_holds_everything_named(self):
        with open(self.model_path) as f:
            model = json.load(f)
        self.assertEqual((model['format'], model['version']), (md.MODEL_FORMAT, md.MODEL_VERSION))
        self.assertEqual(model['vocabulary'], ''.join(sorted(set(''.join(NAMES)))))
        self.assertEqual(model['hyperparameters'], md.HYPERPARAMETERS)
        self.assertEqual((model['num_steps'], model['batch_size'], model['seed']), (12, 2, 42))
        self.assertEqual(model['names_sha256'], md.read_names(os.path.join(self.folder, 'names.txt'))[2])
        self.assertEqual(len(model['length_probs']), md.block_size)
        self.assertEqual(len(model['rng_state'][1]), 625)
        self.assertEqual(sum(len(m) * len(m[0]) for m in model['state_dict'].values()),
                         int(self.saved.stdout.split('parameters: ')[1].split()[0].replace(',', '')))
        self.assertEqual(oct(os.stat(self.model_path).st_mode & 0o777), oct(0o666 & ~self.umask()))

    @staticmethod
    def umask():
        mask = os.umask(0)
        os.umask(mask)
        return mask

    def test_a_failed_save_keeps_the_older_file_and_leaves_nothing(self):
        before = snapshot(self.folder)
        data = runs.split(os.path.join(self.folder, 'names.txt'), 42)
        tok = md.Tokenizer(data.names)
        state_dict = md.init_params(tok.vocab_size, data.rng)
        args = md.parse_args(['--num-steps', '1', '--batch-size', '1', '--save', self.model_path])
        for error in (KeyboardInterrupt(), OSError(28, 'No space left on device')):
            with self.subTest(error=error), mock.patch.object(md.json, 'dump', side_effect=error):
                with self.assertRaises((KeyboardInterrupt, md.UserError)):
                    md.save_model(args, tok, state_dict, md.length_model(data.train_names), data.rng, 'x')
            self.assertEqual(snapshot(self.folder), before)

    def edited(self, name, change):
        with open(self.model_path) as f:
            model = json.load(f)
        change(model)
        with open(os.path.join(self.folder, name), 'w') as f:
            json.dump(model, f)
        return name

    def test_bad_checkpoints(self):
        with open(self.model_path) as f:
            text = f.read()
        self.write('truncated.json', text[:len(text) // 2])
        self.write('notjson.json', 'hello')
        self.write('binary.json', bytes(range(256)))
        self.write('list.json', '[1, 2]')
        os.mkdir(os.path.join(self.folder, 'folder.json'))
        def set_weight(value):
            return lambda m: m['state_dict']['layer1.mlp_fc2'][3].__setitem__(5, value)
        cases = {
            'missing.json': 'cannot read missing.json: No such file or directory',
            'folder.json': 'cannot read folder.json: Is a directory',
            'notjson.json': 'not complete JSON',
            'truncated.json': 'not complete JSON',
            'binary.json': 'not complete JSON',
            'list.json': 'not a microdiffusion-model file',
            self.edited('format.json', lambda m: m.update(format='other')): 'not a microdiffusion-model file',
            self.edited('version.json', lambda m: m.update(version=2)): 'its version, 2, should be 1',
            self.edited('hyper.json', lambda m: m['hyperparameters'].update(n_embd=32)): 'its hyperparameters',
            self.edited('shape.json', lambda m: m['state_dict']['wpe'].pop()): 'wpe is missing, or not 16 x 16',
            self.edited('ragged.json', lambda m: m['state_dict']['wte'][2].pop()): 'wte is missing, or not',
            self.edited('nan.json', set_weight(float('nan'))): 'its layer1.mlp_fc2 holds nan, not a number within ±1000',
            self.edited('inf.json', set_weight(float('inf'))): 'holds inf, not a number within ±1000',
            self.edited('huge.json', set_weight(1e300)): 'holds 1e+300, not a number within ±1000',
            self.edited('text.json', set_weight('0.1')): "holds '0.1', not a number within",
            self.edited('nomatrix.json', lambda m: m['state_dict'].pop('wte')): 'its wte is missing, or not',
            self.edited('norng.json', lambda m: m.pop('rng_state')): 'its rng_state does not load',
            self.edited('badrng.json', lambda m: m.update(rng_state=[3, [1, 2], None])): 'its rng_state does not load',
            self.edited('negrng.json', lambda m: m['rng_state'][1].__setitem__(0, -1)): 'its rng_state does not load',
            self.edited('lengths.json', lambda m: m['length_probs'].pop()): 'its length_probs, [0.0, ',
            self.edited('zerolength.json', lambda m: m['length_probs'].__setitem__(3, 0.0)): 'its length_probs',
            self.edited('sum.json', lambda m: m.update(length_probs=[0.0] + [0.9] * 15)): 'its length_probs',
            self.edited('steps.json', lambda m: m.update(num_steps=-3)): 'its num_steps, -3, should be a whole number from 1',
            self.edited('batch.json', lambda m: m.update(batch_size=0)): 'its batch_size, 0, should be from 1 to 1000',
            self.edited('fsteps.json', lambda m: m.update(num_steps=2.5)): 'its num_steps, 2.5,',
        }
        for path, expect in cases.items():
            with self.subTest(checkpoint=path):
                self.assert_fails_cleanly(AFTER + ['--load', path], expect=expect)

    def test_load_checks_the_data_the_seed_and_the_flags(self):
        self.write('other.txt', '\n'.join(NAMES[:-1]) + '\n')
        self.assert_fails_cleanly(['--input', 'other.txt', '--load', 'model.json'], expect="its names_sha256, ")
        self.assert_fails_cleanly(AFTER + ['--load', 'model.json', '--seed', '7'], expect='its seed, 42, should be 7: pass --seed 42')
        for flag in (['--num-steps', '5'], ['--batch-size', '2'], ['--save', 'again.json']):
            with self.subTest(flag=flag):
                self.assert_fails_cleanly(AFTER + ['--load', 'model.json'] + flag, code=2,
                                          expect=f'--load does not train: leave out {flag[0]}')

    def test_a_save_path_that_cannot_be_written_fails_before_training(self):
        os.mkdir(os.path.join(self.folder, 'adir'))
        for path, expect in (('adir', 'it is there, and not a saved model'),
                             ('adir/', 'it is there, and not a saved model'),
                             ('newdir/', 'No such file or directory'),
                             ('nowhere/model.json', 'No such file or directory'),
                             ('m' * 250 + '.json', 'File name too long')):
            with self.subTest(path=path):
                result = self.assert_fails_cleanly(TRAIN + ['--save', path], expect=expect)
                self.assertNotIn('step ', result.stdout)  # no training was spent

    def test_save_replaces_only_a_saved_model(self):
        self.write('notes.md', '# my notes\n')
        for path in ('names.txt', 'notes.md'):  # the input, an unrelated file
            with self.subTest(path=path):
                result = self.assert_fails_cleanly(TRAIN + ['--save', path], expect='cannot save the model as')
                self.assertNotIn('step ', result.stdout)  # before training, every file as it was
        with open(self.model_path) as f:
            earlier = f.read()
        again = run_script(TRAIN + ['--save', 'model.json', '--seed', '7'], self.folder)  # retraining
        self.assertEqual((again.returncode, again.stderr), (0, ''))
        with open(self.model_path) as f:
            self.assertNotEqual(f.read(), earlier)

    def test_a_stop_after_saving_names_the_saved_model(self):
        args = ['--input', 'names.txt', '--num-steps', '10', '--batch-size', '1', '--workers', '1',
                '--save', 'new.json', '--num-samples', '100000', '--eval-names', '0']
        code, stderr, left = self.stop_run(args, signal.SIGTERM, after='saved the model', wait=0.2)
        self.assertEqual((code, left), (143, []))
        self.assertEqual(stderr, 'microdiffusion.py: terminated while sampling; the model was saved to new.json\n')
        with open(os.path.join(self.folder, 'new.json')) as f:
            self.assertEqual(json.load(f)['format'], 'microdiffusion-model')


if __name__ == '__main__':
    unittest.main()
