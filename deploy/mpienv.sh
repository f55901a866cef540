# Sourced by the scripts: the Open MPI settings that make mpirun work here (as root, more ranks
# than cores, shared memory transport only) and one BLAS thread per rank.
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_pml=${OMPI_MCA_pml:-ob1} OMPI_MCA_btl=${OMPI_MCA_btl:-self,vader}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1}
