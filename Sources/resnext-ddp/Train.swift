import ArgumentParser
import ResNeXtMPI
import ResNeXtTrain

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Train ResNeXt on CIFAR-10 (defaults: the paper's CIFAR setup, ResNeXt-29 8x64d, batch 128, 300 epochs).",
        discussion: """
            Run under mpirun for data parallelism: `mpirun -np 8 resnext-ddp train` splits every global batch \
            of --batch-size images over the processes. Outputs go to --outdir: config.json, metrics.jsonl, \
            metrics.csv, checkpoint.safetensors (every epoch), model.safetensors (at the end), tb/ with --tensorboard.
            """)

    @OptionGroup var settings: TrainSettings

    func run() throws {
        let comm = makeCommunicator()
        let trainer = Trainer(settings: settings, comm: comm, startupLines: [Startup.blasKernelsLine]) {
            FileHandleOutput.standardOutput.write($0 + "\n")
        }
        do {
            try trainer.run()
        } catch {
            fail(comm, error)
        }
        comm.finish()
    }
}
