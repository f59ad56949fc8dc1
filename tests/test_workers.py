"""Minibatches and worker processes: the batch's gradient is the mean of its names', and the
result does not depend on how many processes computed it."""
import os
import random
import signal
import sys
import time
import unittest
from unittest import mock

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)
import microdiffusion as md
from test_cli import NAMES, Folder, run_script, snapshot, without_times


def fresh(seed=0):
    tok = md.Tokenizer(NAMES, md.block_size)
    return tok, md.init_params(tok.vocab_size, random.Random(seed))


def weights_of(state_dict):
    return [p.data for p in md.parameters(state_dict)]


class TestMinibatch(unittest.TestCase):
    def test_batch_gradient_is_the_mean_of_the_names_gradients(self):
        tok, state_dict = fresh()
        params = md.parameters(state_dict)
        seen = []
        def gradients(weights, batch):
            seen.append(batch)
            return [md.name_gradient(clean, noisy, tok, state_dict, params) for clean, noisy in batch]
        with mock.patch.object(md, 'Adam') as adam:
            md.train(NAMES, tok, state_dict, 1, random.Random(5), 3, gradients=gradients)
        got = [p.grad for p in params]
        for p in params:
            p.grad = 0.0
        batch = seen[0]
        self.assertEqual([tok.decode(clean) for clean, _ in batch], NAMES[:3])  # consecutive names
        # the noise of each name, drawn in batch order from the one generator
        rng = random.Random(5)
        for clean, noisy in batch:
            self.assertEqual(noisy, md.corrupt(clean, md.noise_level(rng), rng, tok.MASK))
        grads = [md.name_gradient(clean, noisy, tok, state_dict, params)[1] for clean, noisy in batch]
        self.assertEqual(adam.return_value.step.call_count, 1)
        for i in range(0, len(params), 97):
            self.assertEqual(got[i], sum(g[i] for g in grads) / 3)

    def test_batch_of_one_is_the_old_single_name_step(self):
        tok, state_dict = fresh()
        losses = md.train(NAMES, tok, state_dict, 3, random.Random(1), 1)
        tok, again = fresh()
        params = md.parameters(again)
        optimizer, rng = md.Adam(params), random.Random(1)
        for step in range(1, 4):
            clean = tok.encode(NAMES[step - 1])
            noisy = md.corrupt(clean, md.noise_level(rng), rng, tok.MASK)
            masked = [pos for pos, token in enumerate(noisy) if token == tok.MASK]
            loss = md.masked_loss(md.mask_predictor(noisy, again, masked), clean, noisy, tok.MASK)
            loss.backward()
            optimizer.step(md.learning_rate * (1 - (step - 1) / 3))
            self.assertEqual(loss.data, losses[step - 1])
        self.assertEqual(weights_of(state_dict), weights_of(again))


class TestWorkers(unittest.TestCase):
    def test_two_workers_give_the_same_weights_digit_for_digit(self):
        tok, alone = fresh()
        md.train(NAMES, tok, alone, 4, random.Random(2), 3)
        tok, shared = fresh()
        workers = md.Workers(2, tok)
        try:
            md.train(NAMES, tok, shared, 4, random.Random(2), 3, gradients=workers)
        finally:
            workers.close()
        self.assertEqual(weights_of(alone), weights_of(shared))
        for process in workers.processes:
            self.assertFalse(process.is_alive())

    def test_a_worker_that_dies_stops_training_with_one_line(self):
        tok, state_dict = fresh()
        workers = md.Workers(2, tok)
        try:
            os.kill(workers.processes[1].pid, signal.SIGKILL)
            workers.processes[1].join()
            with self.assertRaisesRegex(md.UserError, 'a worker process died'):
                md.train(NAMES, tok, state_dict, 2, random.Random(0), 2, gradients=workers)
        finally:
            workers.close()

    def test_a_worker_that_raises_stops_training_with_one_line(self):
        tok, _ = fresh()
        workers = md.Workers(2, tok)
        try:
            bad_batch = [([0, tok.END], [tok.MASK, tok.END]), ([999, tok.END], [tok.MASK, tok.END])]
            with self.assertRaisesRegex(md.UserError, 'a worker process failed: IndexError'):
                workers([0.0] * 6848, bad_batch)
        finally:
            workers.close()

    def test_no_processes_falls_back_to_one_with_a_notice(self):
        tok, _ = fresh()
        context = mock.Mock()
        context.Pipe.side_effect = OSError(38, 'Function not implemented')
        with mock.patch.object(md.multiprocessing, 'get_context', return_value=context), \
                mock.patch('sys.stderr') as stderr:
            self.assertIsNone(md.start_workers(2, tok))
        written = ''.join(call.args[0] for call in stderr.write.call_args_list)
        self.assertEqual(written.count('\n'), 1)
        self.assertIn('cannot start worker processes', written)
        self.assertIsNone(md.start_workers(1, tok))  # one worker: no process at all


def processes_in(folder):
    """Processes whose working folder is folder (the script and any worker it started)."""
    found = []
    for pid in os.listdir('/proc'):
        try:
            if pid.isdigit() and os.readlink(f'/proc/{pid}/cwd') == os.path.realpath(folder):
                found.append(int(pid))
        except OSError:
            pass
    return found


class TestWorkersEndToEnd(Folder):
    def test_same_output_with_one_and_two_workers(self):
        self.write('names.txt', '\n'.join(NAMES) + '\n')
        args = ['--input', 'names.txt', '--num-steps', '6', '--batch-size', '3', '--num-samples', '3', '--eval-names', '3']
        one, two = run_script(args + ['--workers', '1'], self.folder), run_script(args + ['--workers', '2'], self.folder)
        self.assertEqual((one.returncode, two.returncode, one.stderr, two.stderr), (0, 0, '', ''))
        self.assertEqual(without_times(one.stdout), without_times(two.stdout))

    @unittest.skipUnless(os.path.isdir('/proc'), 'needs /proc to find the processes')
    def test_ctrl_c_with_workers_stops_everything(self):
        self.write('names.txt', '\n'.join(NAMES))
        before = snapshot(self.folder)
        # Ctrl-C in a terminal reaches the whole process group: the script and its workers
        code, stderr = self.interrupt_training(
            ['--input', 'names.txt', '--num-steps', '100000', '--batch-size', '2', '--workers', '2'],
            while_training=lambda: self.assertEqual(len(processes_in(self.folder)), 3))  # the script, two workers
        self.assertEqual(code, 130)
        self.assertEqual(len(stderr.splitlines()), 1, stderr)
        self.assertRegex(stderr, r'^microdiffusion.py: interrupted at training step \d+ of 100000')
        for _ in range(20):
            if not processes_in(self.folder):
                break
            time.sleep(0.1)
        self.assertEqual(processes_in(self.folder), [])  # no worker left running
        self.assertEqual(snapshot(self.folder), before)


if __name__ == '__main__':
    unittest.main()
