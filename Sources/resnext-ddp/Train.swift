import ArgumentParser
import ResNeXtMPI
import ResNeXtTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train ResNeXt on CIFAR-10 (defaults: the paper's CIFAR setup, ResNeXt-29 8x64d, batch 128, 300 epochs).",
        discussion: """
            Run under mpirun for data parallelism: `mpirun -np 8 resnext-ddp train` splits every global batch \
            of --batch-size images over the processes. Outputs go to --outdir: config.json, metrics.jsonl, \
            metrics.csv, checkpoint-STEP.safetensors and checkpoint.safetensors (the newest; every epoch, every --checkpoint-minutes), model.safetensors (at the end), tb/ with --tensorboard. SIGTERM, SIGINT or SIGUSR1 to any rank: a checkpoint, then exit status 75.
            """)

    @OptionGroup var settings: TrainSettings

    func run() throws {
        let comm = makeCommunicator()
        let trainer = Trainer(settings: settings, comm: comm, startupLines: [Startup.blasKernelsLine]) {
            FileHandleOutput.standardOutput.write($0 + "\n")
        }
        let outcome: Trainer.Outcome
        do {
            outcome = try trainer.run()
        } catch {
            fail(comm, error)
        }
        comm.finish()
        if case .stopped = outcome { throw ExitCode(StopSignal.exitStatus) }
    }
}
