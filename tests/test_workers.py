"""Minibatches and worker processes: the batch's gradient is the mean of its names', the result
does not depend on how many processes computed it, and no worker outlives its run."""
import multiprocessing
import os
import random
import signal
import sys
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
from test_cli import NAMES, Folder, run_script, snapshot, without_times

# 12,800 made-up names of five letters: 1,000 are held out, so the evaluation lasts seconds
MANY_NAMES = [a + b + c + d + e for a in 'bdklmnrt' for b in 'aeiou' for c in 'bdklmnrt'
              for d in 'aeiou' for e in 'lnrsty']


def fresh(seed=0):
    tok = md.Tokenizer(NAMES)
    return tok, md.init_params(tok.vocab_size, random.Random(seed))


def weights_of(state_dict):
    return [p.data for p in md.parameters(state_dict)]


class TestMinibatch(unittest.TestCase):
    def test_batch_gradient_is_the_mean_of_the_names_gradients(self):
        tok, state_dict = fresh()
        seen = []
        def gradients(state_dict, batch):
            seen.append(batch)
            return [md.name_gradient(clean, noisy, tok, state_dict) for clean, noisy in batch]
        with mock.patch.object(md, 'Adam') as adam:
            losses = md.train(NAMES, tok, state_dict, 1, 3, random.Random(5), gradients)
        batch = seen[0]
        self.assertEqual([tok.decode(clean) for clean, _ in batch], NAMES[:3])  # consecutive names
        # the noise of each name, drawn in batch order from the one generator
        rng = random.Random(5)
        for clean, noisy in batch:
            self.assertEqual(noisy, md.corrupt(clean, md.noise_level(rng), tok, rng))
        results = [md.name_gradient(clean, noisy, tok, state_dict) for clean, noisy in batch]
        self.assertEqual(losses, [sum(loss for loss, _ in results) / 3])
        (grad, lr), _ = adam.return_value.step.call_args
        self.assertEqual(lr, md.learning_rate)
        self.assertEqual(grad, [(a + b + c) / 3 for a, b, c in zip(*(g for _, g in results))])

    def test_batch_of_one_is_a_plain_step_of_one_name(self):
        tok, state_dict = fresh()
        losses = md.train(NAMES, tok, state_dict, 3, 1, random.Random(1))
        tok, again = fresh()
        params = md.parameters(again)
        optimizer, rng = md.Adam(params), random.Random(1)
        for step in range(1, 4):
            clean = tok.encode(NAMES[step - 1])
            noisy = md.corrupt(clean, md.noise_level(rng), tok, rng)
            masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
            loss = md.masked_loss(md.mask_predictor(noisy, tok, again, masked), clean, masked)
            loss.backward()
            optimizer.step([p.grad for p in params], md.learning_rate * (1 - (step - 1) / 3))
            for p in params:
                p.grad = 0.0
            self.assertEqual(loss.data, losses[step - 1])
        self.assertEqual(weights_of(state_dict), weights_of(again))


class TestWorkers(unittest.TestCase):
    def test_two_workers_give_the_same_weights_digit_for_digit(self):
        tok, alone = fresh()
        md.train(NAMES, tok, alone, 4, 3, random.Random(2))
        tok, shared = fresh()
        workers = md.Workers(2, tok)
        try:
            self.assertEqual(len(multiprocessing.active_children()), 2)
            md.train(NAMES, tok, shared, 4, 3, random.Random(2), workers.gradients)
        finally:
            workers.pool.shutdown()
        self.assertEqual(weights_of(alone), weights_of(shared))
        self.assertEqual(multiprocessing.active_children(), [])

    def test_a_worker_that_dies_stops_training_with_one_line(self):
        tok, state_dict = fresh()
        workers = md.Workers(2, tok)
        try:
            victim = multiprocessing.active_children()[0]
            os.kill(victim.pid, signal.SIGKILL)
            victim.join()
            with self.assertRaisesRegex(md.UserError, 'a worker process died'):
                md.train(NAMES, tok, state_dict, 2, 2, random.Random(0), workers.gradients)
        finally:
            workers.pool.shutdown()

    def test_a_worker_that_raises_stops_training_with_one_line(self):
        tok, _ = fresh()
        workers = md.Workers(2, tok)
        try:
            bad_batch = [([0, tok.END], [tok.MASK, tok.END]), ([999, tok.END], [tok.MASK, tok.END])]
            with self.assertRaisesRegex(md.UserError, 'a worker process failed: IndexError'):
                workers.share(md.worker_gradients, bad_batch, [0.0] * 6848)
        finally:
            workers.pool.shutdown()

    def test_no_processes_falls_back_to_one_with_a_notice(self):
        tok, _ = fresh()
        with mock.patch.object(md.concurrent.futures, 'ProcessPoolExecutor',
                               side_effect=OSError(38, 'Function not implemented')), \
                mock.patch('sys.stderr') as stderr:
            self.assertIsNone(md.start_workers(2, tok))
        written = ''.join(call.args[0] for call in stderr.write.call_args_list)
        self.assertEqual(written.count('\n'), 1)
        self.assertIn('cannot start worker processes', written)
        self.assertIsNone(md.start_workers(1, tok))  # one worker: no process at all


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

    def test_sigkill_leaves_no_worker(self):
        for start_method in ('fork', 'spawn'):
            for phase in ('training', 'evaluation'):
                with self.subTest(start_method=start_method, phase=phase):
                    code, _ = self.stop(signal.SIGKILL, phase, start_method)
                    self.assertEqual(code, -signal.SIGKILL)


if __name__ == '__main__':
    unittest.main()
