"""Minibatches and worker processes: the batch's gradient is the mean of its names', the result
does not depend on how many processes computed it, and no worker outlives its run."""
import json
import multiprocessing
import os
import random
import signal
import sys
import time
import unittest
from itertools import repeat
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
from test_cli import NAMES, Folder, main_in, run_script, snapshot, without_times
import runs

# 12,800 made-up names of five letters: 1,000 are held out, so the evaluation lasts seconds
MANY_NAMES = [a + b + c + d + e for a in 'bdklmnrt' for b in 'aeiou' for c in 'bdklmnrt'
              for d in 'aeiou' for e in 'lnrsty']


def fresh(seed=0):
    tok = md.Tokenizer(NAMES)
    return tok, md.init_params(tok.vocab_size, random.Random(seed))


class TestMinibatch(Folder):
    """The training loop of main(), run in this process on a small names file."""

    def train(self, steps, batch_size, *patches):
        path = self.write('names.txt', '\n'.join(NAMES))
        code, _, stderr = main_in(self.folder, ['--input', path, '--num-steps', str(steps), '--batch-size',
                                                str(batch_size), '--workers', '1', '--eval-names', '0',
                                                '--num-samples', '0', '--save', 'model.json'])
        self.assertEqual(code, 0, stderr)
        data = runs.split(path, 42)
        return data, md.Tokenizer(data.names)

    def test_batch_gradient_is_the_mean_of_the_names_gradients(self):
        seen = []
        real_gradient = md.name_gradient
        def watching_gradient(clean, noisy, tok, state_dict):
            seen.append((clean, noisy, [p.data for p in md.parameters(state_dict)]))
            return real_gradient(clean, noisy, tok, state_dict)
        with mock.patch.object(md, 'Adam') as adam, mock.patch.object(md, 'name_gradient', watching_gradient):
            data, tok = self.train(1, 3)
        self.assertEqual([tok.decode(clean) for clean, _, _ in seen], data.train_names[:3])  # in order
        # the noise of each name, drawn in batch order from the run's one generator
        rng = data.rng
        state_dict = md.init_params(tok.vocab_size, rng)
        for clean, noisy, _ in seen:
            self.assertEqual(noisy, md.corrupt(clean, md.noise_level(rng), tok, rng))
        results = [md.name_gradient(clean, noisy, tok, state_dict) for clean, noisy, _ in seen]
        (grad, lr), _ = adam.return_value.step.call_args
        self.assertEqual(lr, md.learning_rate)
        # the mean, to the last digit or two (sum() of floats is compensated from Python 3.12 on)
        for got, (a, b, c) in zip(grad, zip(*(g for _, g in results))):
            self.assertAlmostEqual(got, (a + b + c) / 3, delta=1e-15 * max(1e-3, abs(a) + abs(b) + abs(c)))

    def test_batch_of_one_is_a_plain_step_of_one_name(self):
        data, tok = self.train(3, 1)
        rng = data.rng
        state_dict = md.init_params(tok.vocab_size, rng)
        params = md.parameters(state_dict)
        optimizer = md.Adam(params)
        for step in range(1, 4):  # microgpt's loop: one name, its loss, backward, an Adam step
            clean = tok.encode(data.train_names[step - 1])
            noisy = md.corrupt(clean, md.noise_level(rng), tok, rng)
            masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
            loss = md.masked_loss(md.mask_predictor(noisy, tok, state_dict, masked), clean, masked)
            loss.backward()
            optimizer.step([p.grad for p in params], md.learning_rate * (1 - (step - 1) / 3))
            for p in params:
                p.grad = 0.0
        with open(os.path.join(self.folder, 'model.json')) as f:
            saved = json.load(f)['state_dict']
        self.assertEqual(saved, md.as_floats(state_dict))


class TestWorkers(unittest.TestCase):
    def test_two_workers_give_the_same_results_digit_for_digit(self):
        tok, state_dict = fresh()
        rng = random.Random(2)
        cleans = [tok.encode(name) for name in NAMES[:5]]
        noisies = [md.corrupt(clean, 0.5, tok, rng) for clean in cleans]
        alone = list(map(md.name_gradient, cleans, noisies, repeat(tok), repeat(state_dict)))
        weights, lengths = md.as_floats(state_dict), md.length_model(NAMES)
        masks = [md.random_order_masks(name, rng) for name in NAMES]
        bounds = list(map(md.nelbo, NAMES, masks, repeat(tok), repeat(weights), repeat(lengths)))
        with md.worker_map(2, tok, state_dict) as map_:
            self.assertEqual(multiprocessing.active_children(), [])  # they start with the first task
            shared = map_(md.name_gradient, cleans, noisies, repeat(tok), repeat(state_dict))
            self.assertEqual(len(multiprocessing.active_children()), 2)
            shared_bounds = map_(md.nelbo, NAMES, masks, repeat(tok), repeat(weights), repeat(lengths))
        self.assertEqual(alone, shared)
        self.assertEqual(bounds, shared_bounds)
        self.assertEqual(multiprocessing.active_children(), [])

    def test_a_worker_that_dies_stops_training_with_one_line(self):
        tok, state_dict = fresh()
        cleans = [tok.encode(name) for name in NAMES[:2]]
        noisies = [[tok.MASK] * (len(clean) - 1) + [tok.END] for clean in cleans]
        with md.worker_map(2, tok, state_dict) as map_:
            map_(md.name_gradient, cleans, noisies, repeat(tok), repeat(state_dict))  # starts them
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
            time.sleep(0.5)  # the pool sees it die (on 3.9 a task sent meanwhile can block its exit)
            with self.assertRaisesRegex(md.UserError, 'a worker process died'):
                map_(md.name_gradient, cleans, noisies, repeat(tok), repeat(state_dict))
        self.assertEqual(multiprocessing.active_children(), [])

    def test_a_worker_that_raises_stops_training_with_one_line(self):
        tok, state_dict = fresh()
        with md.worker_map(2, tok, state_dict) as map_:
            cleans, noisies = [[0, tok.END], [999, tok.END]], [[tok.MASK, tok.END]] * 2
            with self.assertRaisesRegex(md.UserError, 'a worker process failed: IndexError'):
                map_(md.name_gradient, cleans, noisies, repeat(tok), repeat(state_dict))

    def test_no_processes_falls_back_to_one_with_a_notice(self):
        tok, state_dict = fresh()
        with mock.patch.object(md.concurrent.futures, 'ProcessPoolExecutor',
                               side_effect=OSError(38, 'Function not implemented')), \
                mock.patch('sys.stderr') as stderr, md.worker_map(2, tok, state_dict) as map_:
            self.assertIs(map_, map)
        written = ''.join(call.args[0] for call in stderr.write.call_args_list)
        self.assertEqual(written.count('\n'), 1)
        self.assertIn('cannot start worker processes', written)
        with md.worker_map(1, tok, state_dict) as map_:  # one worker: no process at all
            self.assertIs(map_, map)


class TestWorkersEndToEnd(Folder):
    def test_same_output_with_one_and_two_workers(self):
        self.write('names.txt', '\n'.join(NAMES) + '\n')
        args = ['--input', 'names.txt', '--num-steps', '6', '--batch-size', '3', '--num-samples', '3',
                '--eval-names', '3']
        one, two = run_script(args + ['--workers', '1'], self.folder), run_script(args + ['--workers', '2'], self.folder)
        self.assertEqual((one.returncode, two.returncode, one.stderr, two.stderr), (0, 0, '', ''))
        self.assertEqual(without_times(one.stdout), without_times(two.stdout))


class TestStops(Folder):
    """Ctrl-C, SIGTERM and SIGKILL during training and during the held-out evaluation, with 2
    workers, each run in a process group of its own: one line and the right exit status, nothing
    written, and no process of the run left 2 s later."""

    def stop(self, sig, phase, start_method='fork', group=False):
        self.write('names.txt', '\n'.join(MANY_NAMES))
        before = snapshot(self.folder)
        # training: steps of 2 names, shared by the workers; evaluation: one step, then 1,000 names
        steps = ['--num-steps', '100000', '--batch-size', '2'] if phase == 'training' else ['--num-steps', '1']
        code, stderr, left = self.stop_run(['--input', 'names.txt', '--workers', '2'] + steps, sig,
                                           start_method, wait=0.0 if phase == 'training' else 0.3,
                                           group=group)
        self.assertEqual(left, [], f'processes of the run still there after {sig!r}')
        self.assertEqual(snapshot(self.folder), before)
        return code, stderr

    def test_ctrl_c(self):
        for start_method, phase, where in (('fork', 'training', r'at training step \d+ of 100000'),
                                           ('fork', 'evaluation', 'during the held-out evaluation'),
                                           ('spawn', 'training', r'at training step \d+ of 100000')):
            with self.subTest(start_method=start_method, phase=phase):
                code, stderr = self.stop(signal.SIGINT, phase, start_method)
                self.assertEqual(code, 130)
                self.assertRegex(stderr, rf'^microdiffusion.py: interrupted {where}; nothing was written\n$')

    def test_sigterm(self):
        for start_method in ('fork', 'spawn'):
            for phase, where in (('training', r'at training step \d+ of 100000'),
                                 ('evaluation', 'during the held-out evaluation')):
                with self.subTest(start_method=start_method, phase=phase):
                    code, stderr = self.stop(signal.SIGTERM, phase, start_method)
                    self.assertEqual(code, 143)
                    self.assertRegex(stderr, rf'^microdiffusion.py: terminated {where}; nothing was written\n$')
        with self.subTest(to='every process of the run'):  # the workers end; the main one reports
            code, stderr = self.stop(signal.SIGTERM, 'training', group=True)
            self.assertEqual(code, 143)
            self.assertRegex(stderr, r'^microdiffusion.py: terminated at training step \d+ of 100000; '
                                     r'nothing was written\n$')

    def test_ctrl_c_twice_or_three_times(self):
        # people press Ctrl-C again while the run stops: the first stops it, the others are ignored
        for phase in ('training', 'evaluation'):
            for again in ((0.002,), (0.02, 0.03), (0.05,)):
                with self.subTest(phase=phase, again=again):
                    self.write('names.txt', '\n'.join(MANY_NAMES))
                    training = phase == 'training'
                    steps = ['--num-steps', '100000', '--batch-size', '2'] if training else ['--num-steps', '1']
                    code, stderr, left = self.stop_run(['--input', 'names.txt', '--workers', '2'] + steps,
                                                       signal.SIGINT, wait=0.0 if training else 0.3, again=again)
                    self.assertEqual((code, left), (130, []))
                    self.assertRegex(stderr, r'^microdiffusion.py: interrupted (at training step \d+ of 100000|'
                                             r'during the held-out evaluation); nothing was written\n$')

    def test_a_stop_as_the_workers_start_stops_the_run(self):
        for sig, code in ((signal.SIGINT, 130), (signal.SIGTERM, 143)):
            with self.subTest(signal=sig):
                self.write('names.txt', '\n'.join(MANY_NAMES))
                code_, stderr, left = self.stop_run(['--input', 'names.txt', '--workers', '2', '--num-steps', '5'],
                                                    sig, after='parameters: ')
                self.assertEqual((code_, left), (code, []))
                self.assertEqual(len(stderr.splitlines()), 1, stderr)
                self.assertRegex(stderr, r'^microdiffusion.py: (interrupted|terminated)( at training step \d of 5)?; '
                                         r'nothing was written\n$')

    def test_sigkill_leaves_no_worker(self):
        for start_method in ('fork', 'spawn'):
            for phase in ('training', 'evaluation'):
                with self.subTest(start_method=start_method, phase=phase):
                    code, _ = self.stop(signal.SIGKILL, phase, start_method)
                    self.assertEqual(code, -signal.SIGKILL)


if __name__ == '__main__':
    unittest.main()
