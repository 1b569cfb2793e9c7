import ArgumentParser
import ResNeXtTrain

@main
struct ResNeXtDDP: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "resnext-ddp",
        abstract: "Data-parallel ResNeXt-29 training on CIFAR-10 (Swift over OpenBLAS and MPI).",
        version: resnextDDPVersion,
        subcommands: [Train.self, Eval.self, Bench.self, Report.self, Download.self]
    )

    /// Chooses OpenBLAS's kernels (possibly restarting the process) before the command runs.
    static func main() {
        Startup.blasKernels = Startup.chooseBLASKernels()
        main(nil)
    }
}

/// Model shape options shared by every subcommand.
struct ModelOptions: ParsableArguments {
    @Option(help: "Network depth, 9n+2 (29 for ResNeXt-29).")
    var depth: Int = 29
    @Option(help: "Cardinality C: groups of the 3x3 convolutions.")
    var cardinality: Int = 8
    @Option(name: .customLong("base-channels"), help: "Base width d (64 for 29-8x64d).")
    var baseChannels: Int = 64
}
