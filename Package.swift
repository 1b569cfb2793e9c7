// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "resnext-ddp",
    products: [
        .executable(name: "resnext-ddp", targets: ["resnext-ddp"]),
        .library(name: "ResNeXt", targets: ["ResNeXt"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-numerics", from: "1.0.0"),
    ],
    targets: [
        // OpenBLAS's CBLAS interface, found through pkg-config (Debian: libopenblas-dev).
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // Open MPI's C interface, found through pkg-config (Debian: libopenmpi-dev).
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev", "openmpi-bin"])]
        ),
        // What the processor supports, and the check (before main) that it runs every instruction
        // set the build targeted: C, because it must run before any Swift code and be compiled
        // for the baseline x86-64 whatever the rest of the build targets.
        .target(name: "HostCPU"),
        // The only code that touches MPI types: plain C functions for Swift.
        .target(
            name: "MPIShim",
            dependencies: ["CMPI"]
        ),
        // The engine: layers, model, optimizer, safetensors. No MPI in here.
        .target(
            name: "ResNeXt",
            dependencies: [
                "CBLAS",
                "HostCPU",
                .product(name: "RealModule", package: "swift-numerics"),
            ]
        ),
        // The trainer: CIFAR-10 data, schedule, checkpoints, metrics, TensorBoard; talks to other
        // processes only through the Communicator protocol.
        .target(
            name: "ResNeXtTrain",
            dependencies: ["ResNeXt", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        // The Communicator over MPI_COMM_WORLD, and how a process finds out it is one rank of a job.
        .target(
            name: "ResNeXtMPI",
            dependencies: ["ResNeXtTrain", "MPIShim"]
        ),
        // What `bench` measures and prints (timed steps, the SGEMM ceiling, profile and layer
        // tables, paths in alternation, a simulated network link): nothing here is in `train`.
        .target(
            name: "ResNeXtBench",
            dependencies: ["ResNeXt", "ResNeXtTrain"]
        ),
        // What `report` draws and tabulates from run folders: curves (SVG), summary over seeds.
        .target(
            name: "ResNeXtReport",
            dependencies: ["ResNeXt", "ResNeXtTrain"]
        ),
        // The command line: train, eval, bench, report, download.
        .executableTarget(
            name: "resnext-ddp",
            dependencies: [
                "ResNeXt",
                "ResNeXtTrain",
                "ResNeXtMPI",
                "ResNeXtBench",
                "ResNeXtReport",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        // Tests only: zlib, to decode the PNG that rsvg-convert renders of report's curves.
        .systemLibrary(
            name: "CZlib",
            path: "Tests/CZlib",
            pkgConfig: "zlib",
            providers: [.apt(["zlib1g-dev"])]
        ),
        // Tests only: counts the heap allocations of a thread (interposes malloc in the test runner).
        .target(
            name: "AllocCounter",
            path: "Tests/AllocCounter"
        ),
        // Tests only: `train` with a fault injected on one rank (a communicator that fails).
        .executableTarget(
            name: "resnext-ddp-faults",
            dependencies: ["ResNeXtTrain", "ResNeXtMPI", .product(name: "ArgumentParser", package: "swift-argument-parser")],
            path: "Tests/FaultInjection"
        ),
        // Tests only: the MPI communicator's bfloat16 sum against exact sums, under mpirun.
        .executableTarget(
            name: "resnext-ddp-collectives",
            dependencies: ["ResNeXt", "ResNeXtTrain", "ResNeXtMPI"],
            path: "Tests/CollectiveCheck"
        ),
        .testTarget(
            name: "ResNeXtTests",
            dependencies: [
                "ResNeXt", "ResNeXtTrain", "ResNeXtMPI", "ResNeXtBench", "ResNeXtReport", "CZlib", "resnext-ddp", "resnext-ddp-faults",
                "resnext-ddp-collectives",
                "AllocCounter",
            ],
            exclude: ["Data"]
        ),
    ]
)
